//! Subscriptions and notifications.

pub mod mqtt;
pub mod sender;
