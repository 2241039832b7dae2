//! Runs openraft's own storage conformance suite against a fresh on-disk store per case.
//! It must never share a directory between cases: the suite assumes every store starts empty.

mod common;

use common::{Logs, Sm, TestConfig, CACHE};
use corral_storage::Store;
use openraft::testing::{StoreBuilder, Suite};
use openraft::{AnyError, StorageError, StorageIOError};
use tempfile::TempDir;

struct TempStoreBuilder;

impl StoreBuilder<TestConfig, Logs, Sm, TempDir> for TempStoreBuilder {
    async fn build(&self) -> Result<(TempDir, Logs, Sm), StorageError<u64>> {
        let dir = TempDir::new().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let store = Store::open(dir.path(), CACHE).map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let logs = store.log_store().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        let sm = store.state_machine().map_err(|e| StorageIOError::write(AnyError::new(&e)))?;
        Ok((dir, logs, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(TempStoreBuilder) {
        panic!("openraft's storage suite failed: {e}");
    }
}
