//! The device registry: config groups, devices and pending commands, behind one narrow trait so
//! the embedded store (default) and a MongoDB registry in iotagent-node-lib's collection layout
//! (`groups`, `devices`, `commands`) are interchangeable. Uniqueness follows upstream's indexes:
//! `{apikey, resource}` for groups, `{service, subservice, apikey, device_id}` for devices.
//!
//! Services are stored lower-cased by the caller (the provisioning API); the registry compares
//! strings exactly.

pub mod embedded;

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{Device, Group, PendingCommand};

/// Which devices a listing covers: one subservice, or every subservice (`fiware-servicepath: /*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope<'a> {
    One { service: &'a str, subservice: &'a str },
    AllPaths { service: &'a str },
}

/// A page of a listing: `count` is the total, not the page size.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub count: usize,
    pub items: Vec<T>,
}

#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Stores the groups, all or none; a duplicate `{apikey, resource}` (among them or with a
    /// stored one) fails with `DUPLICATE_GROUP`. Assigns `record_id` when empty.
    async fn create_groups(&self, groups: Vec<Group>) -> Result<()>;
    async fn list_groups(&self, scope: Scope<'_>, limit: Option<usize>, offset: usize) -> Result<Page<Group>>;
    /// The group serving southbound messages with this resource and API key, whatever its service.
    async fn find_group(&self, resource: &str, apikey: &str) -> Result<Option<Group>>;
    /// Any group with this API key, whatever its resource (the southbound fall-back when no
    /// group has the protocol's default resource).
    async fn find_group_by_apikey(&self, apikey: &str) -> Result<Option<Group>>;
    /// Replaces a stored group (same `{apikey, resource}`); `DEVICE_GROUP_NOT_FOUND` if absent.
    async fn update_group(&self, group: Group) -> Result<()>;
    /// Deletes the group; `DEVICE_GROUP_NOT_FOUND` if absent, `MISMATCHED_SERVICE` if it belongs
    /// to another service/subservice.
    async fn delete_group(&self, service: &str, subservice: &str, resource: &str, apikey: &str) -> Result<Group>;

    /// Stores the devices, all or none; a duplicate `{service, subservice, apikey, device_id}`
    /// fails with `DUPLICATE_DEVICE_ID`.
    async fn create_devices(&self, devices: Vec<Device>) -> Result<()>;
    /// Creates the device unless one with the same key exists; returns the stored one. Used by
    /// autoprovisioning, where concurrent first measures must not create duplicates.
    async fn create_device_if_absent(&self, device: Device) -> Result<Device>;
    async fn list_devices(&self, scope: Scope<'_>, limit: Option<usize>, offset: usize) -> Result<Page<Device>>;
    /// One device by id within a service/subservice; `apikey` narrows when given.
    async fn get_device(
        &self,
        service: &str,
        subservice: &str,
        device_id: &str,
        apikey: Option<&str>,
    ) -> Result<Option<Device>>;
    /// The device a southbound message with this API key and device id comes from, whatever
    /// its service. With `apikey == None` (the default key) the device id alone decides.
    async fn find_device(&self, apikey: Option<&str>, device_id: &str) -> Result<Option<Device>>;
    /// Replaces a stored device (same key); `DEVICE_NOT_FOUND` if absent.
    async fn update_device(&self, device: Device) -> Result<()>;
    /// Deletes a device; `DEVICE_NOT_FOUND` if absent. Returns the deleted record.
    async fn delete_device(
        &self,
        service: &str,
        subservice: &str,
        device_id: &str,
        apikey: Option<&str>,
    ) -> Result<Device>;
    /// Deletes every device of a service/subservice; returns them.
    async fn delete_devices_of(&self, service: &str, subservice: &str) -> Result<Vec<Device>>;

    /// Stores (or replaces, by `id`) a pending command.
    async fn put_command(&self, command: PendingCommand) -> Result<()>;
    /// The commands waiting for one device, oldest first.
    async fn device_commands(&self, service: &str, subservice: &str, device_id: &str) -> Result<Vec<PendingCommand>>;
    /// Every stored command (for expiry and for redelivery after a restart).
    async fn all_commands(&self) -> Result<Vec<PendingCommand>>;
    async fn remove_command(&self, id: &str) -> Result<()>;
}
