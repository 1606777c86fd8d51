//! Placeholder: the batching writer lands with the southbound transports.
