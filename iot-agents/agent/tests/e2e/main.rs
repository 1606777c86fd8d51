//! End-to-end tests of the agent: a real `orbis` broker in-process on port 0, the agent on port 0,
//! the machine's Mosquitto (127.0.0.1:1883) and RabbitMQ (127.0.0.1:5672), and simulated devices.

mod amqp;
mod buffering;
mod commands;
mod common;
mod http_south;
mod mqtt;
mod provisioning;
