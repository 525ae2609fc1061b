//! The HTTP API (axum) and the web UI.
