//! The embedded registry: every record in memory for lookups on the measure path (no disk read
//! per message, the caching upstream never merged), and every change written through to a redb
//! file in one committed transaction before the call returns, so the registry survives a
//! restart. Provisioning writes are rare; they run one at a time under a lock.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use async_trait::async_trait;
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Page, Registry, Scope};
use crate::error::{AgentError, Result};
use crate::model::{Device, Group, PendingCommand};

const GROUPS: TableDefinition<&str, &[u8]> = TableDefinition::new("groups");
const DEVICES: TableDefinition<&str, &[u8]> = TableDefinition::new("devices");
const COMMANDS: TableDefinition<&str, &[u8]> = TableDefinition::new("commands");

/// Key of a group: `{apikey, resource}` is unique across services.
fn group_key(apikey: &str, resource: &str) -> String {
    format!("{apikey}\u{1}{resource}")
}

/// Key of a device: `{service, subservice, apikey, device_id}`.
fn device_key(d: &Device) -> String {
    format!("{}\u{1}{}\u{1}{}\u{1}{}", d.service, d.service_path, d.apikey.as_deref().unwrap_or(""), d.device_id)
}

#[derive(Default)]
struct State {
    groups: BTreeMap<String, Group>,
    devices: BTreeMap<String, Device>,
    /// Device id → keys of the devices with that id (usually one): every southbound message
    /// looks its device up by id, which must not cost a scan of all devices.
    by_id: HashMap<String, Vec<String>>,
    commands: BTreeMap<String, PendingCommand>,
}

impl State {
    fn add_device(&mut self, key: String, d: Device) {
        let keys = self.by_id.entry(d.device_id.clone()).or_default();
        if !keys.contains(&key) {
            keys.push(key.clone());
        }
        self.devices.insert(key, d);
    }

    fn remove_device(&mut self, key: &str) -> Option<Device> {
        let d = self.devices.remove(key)?;
        if let Some(keys) = self.by_id.get_mut(&d.device_id) {
            keys.retain(|k| k != key);
            if keys.is_empty() {
                self.by_id.remove(&d.device_id);
            }
        }
        Some(d)
    }

    /// The devices with this id, in key order.
    fn with_id<'a>(&'a self, device_id: &str) -> impl Iterator<Item = (&'a String, &'a Device)> + 'a {
        let mut keys: Vec<&String> = self.by_id.get(device_id).map(|k| k.iter().collect()).unwrap_or_default();
        keys.sort();
        keys.into_iter().filter_map(|k| Some((k, self.devices.get(k)?)))
    }
}

/// A redb-backed registry with an in-memory copy of every record.
pub struct EmbeddedRegistry {
    db: Database,
    state: Mutex<State>,
}

fn db_err(e: impl std::fmt::Display) -> AgentError {
    AgentError::internal_db(format!("registry storage: {e}"))
}

fn load<T: DeserializeOwned>(db: &Database, table: TableDefinition<&str, &[u8]>) -> Result<BTreeMap<String, T>> {
    let txn = db.begin_read().map_err(db_err)?;
    let t = txn.open_table(table).map_err(db_err)?;
    let mut out = BTreeMap::new();
    for row in t.iter().map_err(db_err)? {
        let (k, v) = row.map_err(db_err)?;
        let record = serde_json::from_slice(v.value()).map_err(db_err)?;
        out.insert(k.value().to_owned(), record);
    }
    Ok(out)
}

/// One change to write through.
enum Op<'a> {
    Put(TableDefinition<'static, &'static str, &'static [u8]>, String, Vec<u8>),
    Del(TableDefinition<'static, &'static str, &'static [u8]>, &'a str),
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(db_err)
}

impl EmbeddedRegistry {
    /// Opens (or creates) the registry file and loads every record.
    pub fn open(path: &Path) -> Result<Self, String> {
        let db = Database::create(path).map_err(|e| format!("registry {}: {e}", path.display()))?;
        {
            let txn = db.begin_write().map_err(|e| e.to_string())?;
            for t in [GROUPS, DEVICES, COMMANDS] {
                txn.open_table(t).map_err(|e| e.to_string())?;
            }
            txn.commit().map_err(|e| e.to_string())?;
        }
        let mut state = State {
            groups: load(&db, GROUPS).map_err(|e| e.to_string())?,
            commands: load(&db, COMMANDS).map_err(|e| e.to_string())?,
            ..State::default()
        };
        let devices: BTreeMap<String, Device> = load(&db, DEVICES).map_err(|e| e.to_string())?;
        for (k, d) in devices {
            state.add_device(k, d);
        }
        Ok(EmbeddedRegistry { db, state: Mutex::new(state) })
    }

    /// Writes the changes in one durable transaction.
    fn commit(&self, ops: Vec<Op<'_>>) -> Result<()> {
        let txn = self.db.begin_write().map_err(db_err)?;
        for op in ops {
            match op {
                Op::Put(table, key, value) => {
                    txn.open_table(table).map_err(db_err)?.insert(key.as_str(), value.as_slice()).map_err(db_err)?;
                }
                Op::Del(table, key) => {
                    txn.open_table(table).map_err(db_err)?.remove(key).map_err(db_err)?;
                }
            }
        }
        txn.commit().map_err(db_err)
    }
}

fn in_scope(scope: Scope<'_>, service: &str, subservice: &str) -> bool {
    match scope {
        Scope::One { service: s, subservice: p } => s == service && p == subservice,
        Scope::AllPaths { service: s } => s == service,
    }
}

fn page<T: Clone>(items: Vec<&T>, limit: Option<usize>, offset: usize) -> Page<T> {
    let count = items.len();
    let items = items.into_iter().skip(offset).take(limit.unwrap_or(usize::MAX)).cloned().collect();
    Page { count, items }
}

fn new_record_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..24].to_owned()
}

#[async_trait]
impl Registry for EmbeddedRegistry {
    async fn create_groups(&self, groups: Vec<Group>) -> Result<()> {
        let mut st = self.state.lock();
        let mut ops = Vec::new();
        let mut staged = Vec::new();
        for mut g in groups {
            let key = group_key(&g.apikey, &g.resource);
            if st.groups.contains_key(&key) || staged.iter().any(|(k, _)| k == &key) {
                return Err(AgentError::duplicate_group(format!(
                    "A device configuration already exists for resource {} and API Key {}",
                    g.resource, g.apikey
                )));
            }
            if g.record_id.is_empty() {
                g.record_id = new_record_id();
            }
            ops.push(Op::Put(GROUPS, key.clone(), encode(&g)?));
            staged.push((key, g));
        }
        self.commit(ops)?;
        st.groups.extend(staged);
        Ok(())
    }

    async fn list_groups(&self, scope: Scope<'_>, limit: Option<usize>, offset: usize) -> Result<Page<Group>> {
        let st = self.state.lock();
        let items = st.groups.values().filter(|g| in_scope(scope, &g.service, &g.subservice)).collect();
        Ok(page(items, limit, offset))
    }

    async fn find_group(&self, resource: &str, apikey: &str) -> Result<Option<Group>> {
        Ok(self.state.lock().groups.get(&group_key(apikey, resource)).cloned())
    }

    async fn find_group_by_apikey(&self, apikey: &str) -> Result<Option<Group>> {
        Ok(self.state.lock().groups.values().find(|g| g.apikey == apikey).cloned())
    }

    async fn update_group(&self, group: Group) -> Result<()> {
        let mut st = self.state.lock();
        let key = group_key(&group.apikey, &group.resource);
        if !st.groups.contains_key(&key) {
            return Err(AgentError::group_not_found("Couldn't find device group"));
        }
        self.commit(vec![Op::Put(GROUPS, key.clone(), encode(&group)?)])?;
        st.groups.insert(key, group);
        Ok(())
    }

    async fn delete_group(&self, service: &str, subservice: &str, resource: &str, apikey: &str) -> Result<Group> {
        let mut st = self.state.lock();
        let key = group_key(apikey, resource);
        let Some(g) = st.groups.get(&key) else {
            return Err(AgentError::group_not_found("Couldn't find device group"));
        };
        if g.service != service || g.subservice != subservice {
            return Err(AgentError::mismatched_service(format!(
                "The declared service didn't match the stored one in the entity: {service}{subservice}"
            )));
        }
        self.commit(vec![Op::Del(GROUPS, &key)])?;
        Ok(st.groups.remove(&key).expect("checked above"))
    }

    async fn create_devices(&self, devices: Vec<Device>) -> Result<()> {
        let mut st = self.state.lock();
        let mut ops = Vec::new();
        let mut staged: Vec<(String, Device)> = Vec::new();
        for d in devices {
            let key = device_key(&d);
            if st.devices.contains_key(&key) || staged.iter().any(|(k, _)| k == &key) {
                return Err(AgentError::duplicate_device(format!(
                    "Duplicate device id: {} in service {}{}",
                    d.device_id, d.service, d.service_path
                )));
            }
            ops.push(Op::Put(DEVICES, key.clone(), encode(&d)?));
            staged.push((key, d));
        }
        self.commit(ops)?;
        for (k, d) in staged {
            st.add_device(k, d);
        }
        Ok(())
    }

    async fn create_device_if_absent(&self, device: Device) -> Result<Device> {
        let mut st = self.state.lock();
        let key = device_key(&device);
        if let Some(d) = st.devices.get(&key) {
            return Ok(d.clone());
        }
        self.commit(vec![Op::Put(DEVICES, key.clone(), encode(&device)?)])?;
        st.add_device(key, device.clone());
        Ok(device)
    }

    async fn list_devices(&self, scope: Scope<'_>, limit: Option<usize>, offset: usize) -> Result<Page<Device>> {
        let st = self.state.lock();
        let items = st.devices.values().filter(|d| in_scope(scope, &d.service, &d.service_path)).collect();
        Ok(page(items, limit, offset))
    }

    async fn get_device(
        &self,
        service: &str,
        subservice: &str,
        device_id: &str,
        apikey: Option<&str>,
    ) -> Result<Option<Device>> {
        let st = self.state.lock();
        Ok(st
            .with_id(device_id)
            .map(|(_, d)| d)
            .find(|d| {
                d.service == service
                    && d.service_path == subservice
                    && apikey.is_none_or(|k| d.apikey.as_deref() == Some(k))
            })
            .cloned())
    }

    async fn find_device(&self, apikey: Option<&str>, device_id: &str) -> Result<Option<Device>> {
        let st = self.state.lock();
        Ok(st
            .with_id(device_id)
            .map(|(_, d)| d)
            .find(|d| apikey.is_none_or(|k| d.apikey.as_deref() == Some(k)))
            .cloned())
    }

    async fn update_device(&self, device: Device) -> Result<()> {
        let mut st = self.state.lock();
        let key = device_key(&device);
        if !st.devices.contains_key(&key) {
            return Err(AgentError::device_not_found(format!("No device was found with id:{}", device.device_id)));
        }
        self.commit(vec![Op::Put(DEVICES, key.clone(), encode(&device)?)])?;
        st.devices.insert(key, device);
        Ok(())
    }

    async fn delete_device(
        &self,
        service: &str,
        subservice: &str,
        device_id: &str,
        apikey: Option<&str>,
    ) -> Result<Device> {
        let mut st = self.state.lock();
        let key = st
            .with_id(device_id)
            .find(|(_, d)| {
                d.service == service
                    && d.service_path == subservice
                    && apikey.is_none_or(|k| d.apikey.as_deref() == Some(k))
            })
            .map(|(k, _)| k.clone());
        let Some(key) = key else {
            return Err(AgentError::device_not_found(format!("No device was found with id:{device_id}")));
        };
        self.commit(vec![Op::Del(DEVICES, &key)])?;
        st.remove_device(&key)
            .ok_or_else(|| AgentError::device_not_found(format!("No device was found with id:{device_id}")))
    }

    async fn delete_devices_of(&self, service: &str, subservice: &str) -> Result<Vec<Device>> {
        let mut st = self.state.lock();
        let keys: Vec<String> = st
            .devices
            .iter()
            .filter(|(_, d)| d.service == service && d.service_path == subservice)
            .map(|(k, _)| k.clone())
            .collect();
        self.commit(keys.iter().map(|k| Op::Del(DEVICES, k)).collect())?;
        Ok(keys.iter().filter_map(|k| st.remove_device(k)).collect())
    }

    async fn put_command(&self, command: PendingCommand) -> Result<()> {
        let mut st = self.state.lock();
        self.commit(vec![Op::Put(COMMANDS, command.id.clone(), encode(&command)?)])?;
        st.commands.insert(command.id.clone(), command);
        Ok(())
    }

    async fn device_commands(&self, service: &str, subservice: &str, device_id: &str) -> Result<Vec<PendingCommand>> {
        let st = self.state.lock();
        let mut out: Vec<PendingCommand> = st
            .commands
            .values()
            .filter(|c| c.service == service && c.subservice == subservice && c.device_id == device_id)
            .cloned()
            .collect();
        out.sort_by_key(|c| c.created_ms);
        Ok(out)
    }

    async fn all_commands(&self) -> Result<Vec<PendingCommand>> {
        Ok(self.state.lock().commands.values().cloned().collect())
    }

    async fn remove_command(&self, id: &str) -> Result<()> {
        let mut st = self.state.lock();
        if st.commands.contains_key(id) {
            self.commit(vec![Op::Del(COMMANDS, id)])?;
            st.commands.remove(id);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str) -> Device {
        Device {
            device_id: id.into(),
            service: "smart".into(),
            service_path: "/a".into(),
            apikey: Some("k1".into()),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn records_survive_a_reopen_and_keys_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.redb");
        {
            let r = EmbeddedRegistry::open(&path).unwrap();
            let g = Group {
                service: "smart".into(),
                subservice: "/a".into(),
                apikey: "k1".into(),
                resource: "/iot/json".into(),
                ..Default::default()
            };
            r.create_groups(vec![g.clone()]).await.unwrap();
            assert_eq!(r.create_groups(vec![g]).await.unwrap_err().name, "DUPLICATE_GROUP");
            r.create_devices(vec![device("d1"), device("d2")]).await.unwrap();
            assert_eq!(
                r.create_devices(vec![device("d3"), device("d1")]).await.unwrap_err().name,
                "DUPLICATE_DEVICE_ID"
            );
            r.delete_device("smart", "/a", "d2", None).await.unwrap();
        }
        let r = EmbeddedRegistry::open(&path).unwrap();
        assert!(r.find_group("/iot/json", "k1").await.unwrap().is_some());
        let page = r.list_devices(Scope::AllPaths { service: "smart" }, None, 0).await.unwrap();
        let ids: Vec<_> = page.items.iter().map(|d| d.device_id.as_str()).collect();
        assert_eq!(ids, vec!["d1"], "d3 was in a refused batch, d2 was deleted");
        assert!(r.find_device(Some("k1"), "d1").await.unwrap().is_some());
        assert!(r.find_device(Some("other"), "d1").await.unwrap().is_none());
        assert!(r.find_device(None, "d2").await.unwrap().is_none(), "a deleted device leaves the id index");

        // The same device id under two API keys: each key finds its own, no key finds the first.
        let other = Device { apikey: Some("k2".into()), service_path: "/b".into(), ..device("d1") };
        r.create_devices(vec![other]).await.unwrap();
        assert_eq!(r.find_device(Some("k2"), "d1").await.unwrap().unwrap().service_path, "/b");
        assert_eq!(r.find_device(Some("k1"), "d1").await.unwrap().unwrap().service_path, "/a");
        assert_eq!(r.get_device("smart", "/b", "d1", None).await.unwrap().unwrap().apikey.as_deref(), Some("k2"));
        r.delete_devices_of("smart", "/a").await.unwrap();
        assert!(r.find_device(Some("k1"), "d1").await.unwrap().is_none());
        assert!(r.find_device(None, "d1").await.unwrap().is_some());
    }
}
