//! Chassis cluster logic.
