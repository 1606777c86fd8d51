//! Subscriptions and notifications.

pub mod sender;
