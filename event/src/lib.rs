//! The audit event model: parsing, framing, HMAC checks, envelope signing, event ids. Pure, no I/O.
