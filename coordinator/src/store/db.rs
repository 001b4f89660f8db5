//! One SQL connection over either backend: SQLite (rusqlite) or PostgreSQL (the blocking `postgres` client).
//!
//! Every store function is written once against [`Conn`], whose methods mirror rusqlite's (`execute`,
//! `query_row`, `prepare_cached` → `query_map` / `exists`, [`OptionalExt::optional`]) so the SQL and its row
//! decoding read the same on both. The SQL is the portable subset both databases share: `?N` placeholders
//! (rewritten to `$N` for PostgreSQL by [`pg_placeholders`]), `INSERT … ON CONFLICT`, `RETURNING`, integers as
//! `BIGINT`-sized values, no integer used as a boolean in `WHERE`. Parameters are [`Param`]s, which adapt to the
//! type PostgreSQL inferred for the placeholder (an integer sent to an `INT4` column, text to `TEXT`), and values
//! read back go through [`Value`], so a column that is `INTEGER` in SQLite and `BIGINT` in PostgreSQL decodes alike.

use super::{Result, StoreError};
use std::cell::RefCell;
use std::collections::HashMap;

/// A value read from a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An integer (any width; booleans are stored as 0/1).
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

/// A parameter bound to a placeholder, borrowed from the caller.
#[derive(Debug, Clone, Copy)]
pub enum Param<'a> {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
}

/// Something that can be bound to a placeholder.
pub trait ToParam {
    /// This value as a parameter.
    fn to_param(&self) -> Param<'_>;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn to_param(&self) -> Param<'_> {
                // Wider than i64 only past 9.2e18, which no count, size or timestamp here reaches.
                Param::Int(i64::try_from(*self).unwrap_or(i64::MAX))
            }
        }
    )*};
}
int_param!(i64, i32, u32, u16, u8, u64, usize);

impl ToParam for bool {
    fn to_param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}
impl ToParam for f64 {
    fn to_param(&self) -> Param<'_> {
        Param::Real(*self)
    }
}
impl ToParam for str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl ToParam for String {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl ToParam for [u8] {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl ToParam for Vec<u8> {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl<T: ToParam + ?Sized> ToParam for &T {
    fn to_param(&self) -> Param<'_> {
        (**self).to_param()
    }
}
impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Param<'_> {
        match self {
            Some(v) => v.to_param(),
            None => Param::Null,
        }
    }
}
impl ToParam for Param<'_> {
    fn to_param(&self) -> Param<'_> {
        *self
    }
}

/// Refuse text holding a NUL byte before it reaches either database (see [`StoreError::NulByte`]).
fn check_text(params: &[Param<'_>]) -> Result<()> {
    if params
        .iter()
        .any(|p| matches!(p, Param::Text(t) if t.contains('\0')))
    {
        return Err(StoreError::NulByte);
    }
    Ok(())
}

/// The parameters of one statement: `args![a, b]`, an array of one type (`[name]`), a slice of [`Param`]s, or
/// `()` for none.
pub trait Params {
    /// The parameters, in placeholder order.
    fn params(&self) -> Vec<Param<'_>>;
}
impl Params for () {
    fn params(&self) -> Vec<Param<'_>> {
        Vec::new()
    }
}
impl<T: ToParam, const N: usize> Params for [T; N] {
    fn params(&self) -> Vec<Param<'_>> {
        self.iter().map(ToParam::to_param).collect()
    }
}
impl Params for &[Param<'_>] {
    fn params(&self) -> Vec<Param<'_>> {
        self.to_vec()
    }
}
impl Params for Vec<Param<'_>> {
    fn params(&self) -> Vec<Param<'_>> {
        self.clone()
    }
}

/// The parameters of a statement, of mixed types: `args![name, now, state.name()]`.
#[macro_export]
macro_rules! args {
    () => { () };
    ($($v:expr),+ $(,)?) => {
        &[$($crate::store::db::ToParam::to_param(&$v)),+][..]
    };
}
pub use args;

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(match *self {
            Param::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Param::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(i)),
            Param::Real(f) => ToSqlOutput::Borrowed(ValueRef::Real(f)),
            Param::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Param::Blob(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

impl postgres_types::ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &postgres_types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use postgres_types::Type;
        match *self {
            Param::Null => Ok(postgres_types::IsNull::Yes),
            Param::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::FLOAT8 => (i as f64).to_sql(ty, out),
                Type::FLOAT4 => (i as f32).to_sql(ty, out),
                // An untyped context (`SELECT $1`): PostgreSQL takes it as text.
                _ => i.to_string().as_str().to_sql(ty, out),
            },
            Param::Real(f) => match *ty {
                Type::FLOAT4 => (f as f32).to_sql(ty, out),
                Type::FLOAT8 => f.to_sql(ty, out),
                _ => f.to_string().as_str().to_sql(ty, out),
            },
            Param::Text(s) => match *ty {
                Type::INT8 => s.parse::<i64>()?.to_sql(ty, out),
                Type::INT4 => s.parse::<i32>()?.to_sql(ty, out),
                Type::BYTEA => s.as_bytes().to_sql(ty, out),
                _ => s.to_sql(ty, out),
            },
            Param::Blob(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &postgres_types::Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

/// Something a column decodes into.
pub trait FromValue: Sized {
    /// Decode `v`; `Err` names what was found.
    fn from_value(v: Value) -> std::result::Result<Self, String>;
}

impl FromValue for Value {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        Ok(v)
    }
}
impl FromValue for i64 {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i),
            other => Err(format!("expected an integer, found {other:?}")),
        }
    }
}
macro_rules! int_value {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            fn from_value(v: Value) -> std::result::Result<Self, String> {
                let i = i64::from_value(v)?;
                <$t>::try_from(i).map_err(|_| format!("integer {i} out of range for {}", stringify!($t)))
            }
        }
    )*};
}
int_value!(i32, u32, u16, u8, u64, usize);
impl FromValue for bool {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}
impl FromValue for f64 {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Real(f) => Ok(f),
            Value::Int(i) => Ok(i as f64),
            other => Err(format!("expected a number, found {other:?}")),
        }
    }
}
impl FromValue for String {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Text(s) => Ok(s),
            other => Err(format!("expected text, found {other:?}")),
        }
    }
}
impl FromValue for Vec<u8> {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Blob(b) => Ok(b),
            Value::Text(s) => Ok(s.into_bytes()),
            other => Err(format!("expected bytes, found {other:?}")),
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: Value) -> std::result::Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// One row of a result.
pub enum Row<'r> {
    /// A SQLite row.
    Sqlite(&'r rusqlite::Row<'r>),
    /// A PostgreSQL row.
    Pg(&'r postgres::Row),
}

impl Row<'_> {
    /// How many columns the row has.
    pub fn len(&self) -> usize {
        match self {
            Row::Sqlite(r) => r.as_ref().column_count(),
            Row::Pg(r) => r.len(),
        }
    }

    /// Whether the row has no column.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Column `idx` (0-based), decoded.
    pub fn get<T: FromValue>(&self, idx: usize) -> Result<T> {
        let v = self.value(idx)?;
        T::from_value(v).map_err(|detail| StoreError::Column { idx, detail })
    }

    fn value(&self, idx: usize) -> Result<Value> {
        match self {
            Row::Sqlite(r) => {
                use rusqlite::types::ValueRef;
                Ok(match r.get_ref(idx)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(i) => Value::Int(i),
                    ValueRef::Real(f) => Value::Real(f),
                    ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                })
            }
            Row::Pg(r) => pg_value(r, idx),
        }
    }
}

fn pg_value(r: &postgres::Row, idx: usize) -> Result<Value> {
    use postgres_types::Type;
    let col = r.columns().get(idx).ok_or(StoreError::Column {
        idx,
        detail: format!("the row has {} columns", r.len()),
    })?;
    let ty = col.type_().clone();
    let v = match ty {
        Type::INT8 => r.try_get::<_, Option<i64>>(idx)?.map(Value::Int),
        Type::INT4 => r
            .try_get::<_, Option<i32>>(idx)?
            .map(|i| Value::Int(i.into())),
        Type::INT2 => r
            .try_get::<_, Option<i16>>(idx)?
            .map(|i| Value::Int(i.into())),
        Type::BOOL => r
            .try_get::<_, Option<bool>>(idx)?
            .map(|b| Value::Int(b.into())),
        Type::FLOAT8 => r.try_get::<_, Option<f64>>(idx)?.map(Value::Real),
        Type::FLOAT4 => r
            .try_get::<_, Option<f32>>(idx)?
            .map(|f| Value::Real(f.into())),
        Type::BYTEA => r.try_get::<_, Option<Vec<u8>>>(idx)?.map(Value::Blob),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            r.try_get::<_, Option<String>>(idx)?.map(Value::Text)
        }
        other => {
            return Err(StoreError::Column {
                idx,
                detail: format!("unsupported PostgreSQL type {other}"),
            });
        }
    };
    Ok(v.unwrap_or(Value::Null))
}

/// A connection (or transaction) on either backend.
pub struct Conn<'c> {
    inner: Inner<'c>,
}

enum Inner<'c> {
    Sqlite(&'c rusqlite::Connection),
    Pg {
        session: RefCell<postgres::Transaction<'c>>,
        stmts: &'c RefCell<HashMap<String, postgres::Statement>>,
        /// Row locks this transaction holds already (see [`Conn::first_lock`]).
        locked: RefCell<std::collections::HashSet<String>>,
    },
}

impl std::fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.inner {
            Inner::Sqlite(_) => "Conn(sqlite)",
            Inner::Pg { .. } => "Conn(postgres)",
        })
    }
}

impl<'c> Conn<'c> {
    /// Over a SQLite connection (or transaction, which derefs to one).
    pub fn sqlite(c: &'c rusqlite::Connection) -> Self {
        Self {
            inner: Inner::Sqlite(c),
        }
    }

    /// Over a PostgreSQL transaction, with its connection's prepared-statement cache.
    pub(crate) fn pg(
        tx: postgres::Transaction<'c>,
        stmts: &'c RefCell<HashMap<String, postgres::Statement>>,
    ) -> Self {
        Self {
            inner: Inner::Pg {
                session: RefCell::new(tx),
                stmts,
                locked: RefCell::default(),
            },
        }
    }

    /// The PostgreSQL transaction back, to commit it.
    pub(crate) fn into_pg(self) -> Option<postgres::Transaction<'c>> {
        match self.inner {
            Inner::Pg { session, .. } => Some(session.into_inner()),
            Inner::Sqlite(_) => None,
        }
    }

    /// PostgreSQL: `true` the first time `key` is asked for in this transaction (take the lock then), `false`
    /// after (it is held until the commit; asking again would cost a round trip for nothing). SQLite: `false`.
    pub fn first_lock(&self, key: &str) -> bool {
        match &self.inner {
            Inner::Pg { locked, .. } => locked.borrow_mut().insert(key.to_owned()),
            Inner::Sqlite(_) => false,
        }
    }

    /// Whether this transaction already took the lock `key` (see [`Conn::first_lock`]). SQLite: `false`.
    pub fn holds_lock(&self, key: &str) -> bool {
        match &self.inner {
            Inner::Pg { locked, .. } => locked.borrow().contains(key),
            Inner::Sqlite(_) => false,
        }
    }

    /// Whether this is a PostgreSQL connection (for the few statements whose spelling differs).
    pub fn is_postgres(&self) -> bool {
        matches!(self.inner, Inner::Pg { .. })
    }

    /// The SQLite connection, for SQLite-only maintenance (pragmas, query plans in tests).
    pub fn as_sqlite(&self) -> Option<&rusqlite::Connection> {
        match self.inner {
            Inner::Sqlite(c) => Some(c),
            Inner::Pg { .. } => None,
        }
    }

    fn pg_statement(
        tx: &mut postgres::Transaction<'_>,
        stmts: &RefCell<HashMap<String, postgres::Statement>>,
        sql: &str,
    ) -> Result<postgres::Statement> {
        if let Some(st) = stmts.borrow().get(sql) {
            return Ok(st.clone());
        }
        let translated = pg_placeholders(sql);
        let st = tx.prepare(&translated)?;
        stmts.borrow_mut().insert(sql.to_owned(), st.clone());
        Ok(st)
    }

    fn pg_query(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<postgres::Row>> {
        let Inner::Pg { session, stmts, .. } = &self.inner else {
            return Ok(Vec::new());
        };
        let mut s = session.borrow_mut();
        let st = Self::pg_statement(&mut s, stmts, sql)?;
        let refs: Vec<&(dyn postgres_types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn postgres_types::ToSql + Sync))
            .collect();
        Ok(s.query(&st, &refs)?)
    }

    fn pg_execute(&self, sql: &str, params: &[Param<'_>]) -> Result<usize> {
        let Inner::Pg { session, stmts, .. } = &self.inner else {
            return Ok(0);
        };
        let mut s = session.borrow_mut();
        let st = Self::pg_statement(&mut s, stmts, sql)?;
        let refs: Vec<&(dyn postgres_types::ToSql + Sync)> = params
            .iter()
            .map(|p| p as &(dyn postgres_types::ToSql + Sync))
            .collect();
        Ok(usize::try_from(s.execute(&st, &refs)?).unwrap_or(usize::MAX))
    }

    /// Run one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        let p = params.params();
        check_text(&p)?;
        match &self.inner {
            Inner::Sqlite(c) => Ok(c
                .prepare_cached(sql)?
                .execute(rusqlite::params_from_iter(p))?),
            Inner::Pg { .. } => self.pg_execute(sql, &p),
        }
    }

    /// Run statements separated by `;`, without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<()> {
        match &self.inner {
            Inner::Sqlite(c) => Ok(c.execute_batch(sql)?),
            Inner::Pg { session, .. } => Ok(session.borrow_mut().batch_execute(sql)?),
        }
    }

    /// The first row of a query, decoded by `f`; [`StoreError::NoRows`] when there is none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut f = Some(f);
        let mut out = None;
        self.query_each(sql, params, |r| {
            if let Some(f) = f.take() {
                out = Some(f(r)?);
            }
            Ok(false)
        })?;
        out.ok_or(StoreError::NoRows)
    }

    /// Every row of a query, decoded by `f`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: impl Params,
        mut f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut out = Vec::new();
        self.query_each(sql, params, |r| {
            out.push(f(r)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Call `f` on each row until it returns `false`.
    fn query_each(
        &self,
        sql: &str,
        params: impl Params,
        mut f: impl FnMut(&Row<'_>) -> Result<bool>,
    ) -> Result<()> {
        let p = params.params();
        check_text(&p)?;
        match &self.inner {
            Inner::Sqlite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows = st.query(rusqlite::params_from_iter(p))?;
                while let Some(r) = rows.next()? {
                    if !f(&Row::Sqlite(r))? {
                        break;
                    }
                }
                Ok(())
            }
            Inner::Pg { .. } => {
                for r in self.pg_query(sql, &p)? {
                    if !f(&Row::Pg(&r))? {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    /// A statement to run (cached on both backends; the name follows rusqlite's).
    pub fn prepare_cached<'s>(&'s self, sql: &str) -> Result<Stmt<'s, 'c>> {
        Ok(Stmt {
            conn: self,
            sql: sql.to_owned(),
        })
    }

    /// Same as [`Conn::prepare_cached`].
    pub fn prepare<'s>(&'s self, sql: &str) -> Result<Stmt<'s, 'c>> {
        self.prepare_cached(sql)
    }
}

/// A statement bound to its connection (rusqlite's shape: `prepare_cached(sql)?.query_map(params, f)`).
pub struct Stmt<'s, 'c> {
    conn: &'s Conn<'c>,
    sql: String,
}

impl Stmt<'_, '_> {
    /// See [`Conn::execute`].
    pub fn execute(&mut self, params: impl Params) -> Result<usize> {
        self.conn.execute(&self.sql, params)
    }

    /// See [`Conn::query_row`].
    pub fn query_row<T>(
        &mut self,
        params: impl Params,
        f: impl FnOnce(&Row<'_>) -> Result<T>,
    ) -> Result<T> {
        self.conn.query_row(&self.sql, params, f)
    }

    /// See [`Conn::query_map`]: the decoded rows, each a `Result` so rusqlite-style `collect` still reads.
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        f: impl FnMut(&Row<'_>) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        Ok(self
            .conn
            .query_map(&self.sql, params, f)?
            .into_iter()
            .map(Ok)
            .collect::<Vec<_>>()
            .into_iter())
    }

    /// Whether the query returns a row.
    pub fn exists(&mut self, params: impl Params) -> Result<bool> {
        let mut found = false;
        self.conn.query_each(&self.sql, params, |_| {
            found = true;
            Ok(false)
        })?;
        Ok(found)
    }
}

/// rusqlite's `optional()`: no row is `None`, not an error.
pub trait OptionalExt<T> {
    /// `Ok(None)` for [`StoreError::NoRows`].
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExt<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Rewrite SQLite's `?N` and `?` placeholders as PostgreSQL's `$N`, leaving string literals and quoted names alone.
pub fn pg_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut next = 1usize;
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(ch) = chars.next() {
        if let Some(q) = quote {
            out.push(ch);
            if ch == q {
                quote = None;
            }
            continue;
        }
        match ch {
            '\'' | '"' => {
                quote = Some(ch);
                out.push(ch);
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                out.push('$');
                if digits.is_empty() {
                    out.push_str(&next.to_string());
                    next += 1;
                } else {
                    out.push_str(&digits);
                }
            }
            _ => out.push(ch),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_literals_only() {
        assert_eq!(
            pg_placeholders("SELECT a FROM t WHERE b = ?1 AND c = '?2' AND \"e?\" = ?12"),
            "SELECT a FROM t WHERE b = $1 AND c = '?2' AND \"e?\" = $12"
        );
        assert_eq!(
            pg_placeholders("SELECT a FROM t WHERE d IN (?, ?)"),
            "SELECT a FROM t WHERE d IN ($1, $2)"
        );
    }
}
