//! The transport between stages: the `Transport` trait and the embedded in-process bus (Kafka in a later issue).
