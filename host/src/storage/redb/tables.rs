//! The tables of a write transaction, each opened once. redb finds a
//! table in its table tree at every open and writes the table's root back
//! at every close; a job's writes open about two dozen tables, so a
//! commit of a hundred jobs did that thousands of times (an eighth of the
//! writer's time under load). Here a table is lent out for as long as a
//! caller holds it and put back when the loan ends, so the next open of it
//! in the same transaction costs a look in a short list, and the roots are
//! written once, when the transaction's tables close before its commit.
//!
//! Every write through a loan is also recorded, as the bytes redb stores,
//! for the [journal](super::journal) that makes the commit durable.

use super::StorageError;
use super::journal::Ops;
use ::redb::{AccessGuard, Key, Table, TableDefinition, TableHandle, Value, WriteTransaction};
use std::borrow::Borrow;
use std::cell::RefCell;
use std::ops::{Deref, RangeBounds};

/// The open tables of one write transaction that nobody holds now.
pub(super) struct Tables<'t> {
    txn: &'t WriteTransaction,
    idle: RefCell<Vec<(String, AnyTable<'t>)>>,
    /// The writes made so far, for the journal.
    ops: RefCell<Ops>,
}

impl<'t> Tables<'t> {
    /// The tables of `txn`, recording its writes into `ops` (an emptied
    /// buffer).
    pub(super) fn new(txn: &'t WriteTransaction, ops: Ops) -> Self {
        Self { txn, idle: RefCell::default(), ops: RefCell::new(ops) }
    }

    /// The writes made through these tables, in order.
    pub(super) fn take_ops(&self) -> Ops {
        self.ops.take()
    }

    fn record(&self, table: &str, key: &[u8], value: Option<&[u8]>) {
        self.ops.borrow_mut().push(table, key, value);
    }

    /// The table of `def`, opened by an earlier loan or now. Two loans of
    /// one table at once are refused, as redb refuses two opens.
    pub(super) fn open_table<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<'_, K, V>,
    ) -> Result<Lent<'_, 't, K, V>, StorageError>
    where
        Table<'t, K, V>: Kind<'t>,
    {
        let idle = {
            let mut idle = self.idle.borrow_mut();
            let at = idle.iter().position(|(name, _)| name == def.name());
            at.map(|at| idle.swap_remove(at))
        };
        let (name, table) = match idle {
            Some((name, table)) => (name, Kind::take(table).expect("a table's name has one type")),
            None => (def.name().to_string(), self.txn.open_table(def)?),
        };
        Ok(Lent { tables: self, name, table: Some(table) })
    }

    /// Deletes the table of `def`, closing it first if it is open.
    pub(super) fn delete_table<K: Key + 'static, V: Value + 'static>(
        &self,
        def: TableDefinition<'_, K, V>,
    ) -> Result<(), StorageError> {
        self.idle.borrow_mut().retain(|(name, _)| name != def.name());
        self.txn.delete_table(def)?;
        Ok(())
    }
}

/// A table lent out of [`Tables`], put back when dropped.
pub(super) struct Lent<'a, 't, K: Key + 'static, V: Value + 'static>
where
    Table<'t, K, V>: Kind<'t>,
{
    tables: &'a Tables<'t>,
    name: String,
    table: Option<Table<'t, K, V>>,
}

impl<'t, K: Key + 'static, V: Value + 'static> Deref for Lent<'_, 't, K, V>
where
    Table<'t, K, V>: Kind<'t>,
{
    type Target = Table<'t, K, V>;

    fn deref(&self) -> &Self::Target {
        self.table.as_ref().expect("a loan holds its table until dropped")
    }
}

/// Writes go through these, which record them; reads through the table.
impl<'t, K: Key + 'static, V: Value + 'static> Lent<'_, 't, K, V>
where
    Table<'t, K, V>: Kind<'t>,
{
    fn table_mut(&mut self) -> &mut Table<'t, K, V> {
        self.table.as_mut().expect("a loan holds its table until dropped")
    }

    pub(super) fn insert<'k, 'v>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
        value: impl Borrow<V::SelfType<'v>>,
    ) -> Result<Option<AccessGuard<'_, V>>, ::redb::StorageError> {
        {
            let (key, value) = (K::as_bytes(key.borrow()), V::as_bytes(value.borrow()));
            self.tables.record(&self.name, key.as_ref(), Some(value.as_ref()));
        }
        self.table_mut().insert(key, value)
    }

    pub(super) fn remove<'k>(
        &mut self,
        key: impl Borrow<K::SelfType<'k>>,
    ) -> Result<Option<AccessGuard<'_, V>>, ::redb::StorageError> {
        self.tables.record(&self.name, K::as_bytes(key.borrow()).as_ref(), None);
        self.table_mut().remove(key)
    }

    /// Removes every row in `range`.
    pub(super) fn remove_range<'a, KR>(
        &mut self,
        range: impl RangeBounds<KR> + 'a,
    ) -> Result<(), ::redb::StorageError>
    where
        KR: Borrow<K::SelfType<'a>> + 'a,
    {
        let (tables, name) = (self.tables, &self.name);
        let table = self.table.as_mut().expect("a loan holds its table until dropped");
        table.retain_in(range, |key, _| {
            tables.record(name, K::as_bytes(&key).as_ref(), None);
            false
        })
    }

    /// Writes `key` and `value` given as the bytes redb stores (a removal
    /// when `value` is `None`): the journal's replay.
    pub(super) fn write_bytes(
        &mut self,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let key = K::from_bytes(key);
        match value {
            Some(value) => drop(self.insert(&key, V::from_bytes(value))?),
            None => drop(self.remove(&key)?),
        }
        Ok(())
    }
}

impl<'t, K: Key + 'static, V: Value + 'static> Drop for Lent<'_, 't, K, V>
where
    Table<'t, K, V>: Kind<'t>,
{
    fn drop(&mut self) {
        if let Some(table) = self.table.take() {
            let name = std::mem::take(&mut self.name);
            self.tables.idle.borrow_mut().push((name, table.keep()));
        }
    }
}

/// A table type of the schema, which [`AnyTable`] can hold.
pub(super) trait Kind<'t>: Sized {
    fn keep(self) -> AnyTable<'t>;
    fn take(any: AnyTable<'t>) -> Option<Self>;
}

macro_rules! kinds {
    ($($kind:ident: $key:ty => $value:ty,)*) => {
        /// An open table of any of the key and value types of the schema.
        pub(super) enum AnyTable<'t> {
            $($kind(Table<'t, $key, $value>),)*
        }

        $(impl<'t> Kind<'t> for Table<'t, $key, $value> {
            fn keep(self) -> AnyTable<'t> {
                AnyTable::$kind(self)
            }

            fn take(any: AnyTable<'t>) -> Option<Self> {
                match any {
                    AnyTable::$kind(table) => Some(table),
                    _ => None,
                }
            }
        })*
    };
}

kinds! {
    IdToBytes: u128 => &'static [u8],
    BytesToUnit: &'static [u8] => (),
    BytesToStr: &'static [u8] => &'static str,
    BytesToCount: &'static [u8] => u64,
    LockedToUnit: (&'static str, &'static [u8]) => (),
    TimeToUnit: (u64, u128) => (),
    TimeToAttempts: (u64, u128) => u32,
    SeqToBytes: (u128, u64) => &'static [u8],
    PairToUnit: (u128, u128) => (),
    NameToBytes: &'static str => &'static [u8],
    NameToId: &'static str => u128,
    NameToCount: &'static str => u64,
    NamePairToBytes: (&'static str, &'static str) => &'static [u8],
    NamePairToId: (&'static str, &'static str) => u128,
    NameTripleToBytes: (&'static str, &'static str, &'static str) => &'static [u8],
    NameTripleToCount: (&'static str, &'static str, &'static str) => u64,
}
