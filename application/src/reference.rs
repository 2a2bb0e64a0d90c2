//! The reference tables the risk controls read (BIN table, IP-to-country table),
//! held in memory and swapped whole at run time (`caisse reference load`).

use std::sync::{Arc, RwLock};

use caisse_domain::reference::{BinTable, IpCountryTable};

/// One consistent set of reference tables. A payment evaluates its rules
/// against one `Arc<ReferenceData>`: a swap never shows it half of a table.
#[derive(Debug, Clone, Default)]
pub struct ReferenceData {
    pub bins: BinTable,
    pub ip_countries: IpCountryTable,
    /// Which load the BIN table comes from (`shipped` or a load's version id);
    /// recorded in every risk decision, so an auditor knows which table ruled.
    pub bins_version: String,
    pub ip_countries_version: String,
}

/// The tables in use, shared by every request of a process. Readers take an
/// `Arc` snapshot (a pointer copy under a short read lock); `replace` swaps it.
#[derive(Debug, Clone, Default)]
pub struct SharedReference {
    current: Arc<RwLock<Arc<ReferenceData>>>,
}

impl SharedReference {
    pub fn new(data: ReferenceData) -> Self {
        SharedReference {
            current: Arc::new(RwLock::new(Arc::new(data))),
        }
    }

    pub fn current(&self) -> Arc<ReferenceData> {
        self.current.read().expect("reference data lock").clone()
    }

    pub fn replace(&self, data: ReferenceData) {
        *self.current.write().expect("reference data lock") = Arc::new(data);
    }
}
