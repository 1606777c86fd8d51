//! Subscriptions and notifications.

pub mod amqp;
pub mod mqtt;
pub mod sender;
