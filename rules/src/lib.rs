//! Rules: Sigma rules and correlations, anomaly detectors, alerts and notifiers.
