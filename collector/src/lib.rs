//! Sources: file tailing with checkpoints (socket and syslog receivers and the spool come later).
