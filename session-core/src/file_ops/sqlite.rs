//! SQLite files: `{"tables": {name: [row objects]}}`.
//!
//! Writing builds the database in a private temporary directory (the bundled
//! SQLite has no in-memory serialisation here) and returns its bytes;
//! reading copies the bytes to one, so a database in the workspace is never
//! opened in place, where SQLite might leave a journal beside it.

use std::fs;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};
use serde_json::{Map, Number, Value};

use super::columns::{ColumnProfile, cell_text, profile_columns, rows_of};
use super::{FileType, kind_of, read_error, write_error};
use crate::error::{Error, Result};

/// The storage type declared for a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SqlType {
    Integer,
    Real,
    Text,
}

impl SqlType {
    /// INTEGER when every non-null value is an integer that fits in 64 bits
    /// (booleans count, as 0 and 1), REAL when every non-null value is a
    /// number, TEXT otherwise and for a column holding only nulls.
    fn of(profile: ColumnProfile) -> SqlType {
        if !profile.any_value {
            SqlType::Text
        } else if profile.all_int_or_bool {
            SqlType::Integer
        } else if profile.all_number_or_bool {
            SqlType::Real
        } else {
            SqlType::Text
        }
    }

    fn keyword(self) -> &'static str {
        match self {
            SqlType::Integer => "INTEGER",
            SqlType::Real => "REAL",
            SqlType::Text => "TEXT",
        }
    }

    /// The value bound for one cell. TEXT cells hold strings as they are and
    /// any other value as JSON text; a missing key is NULL.
    fn bind(self, value: Option<&Value>) -> ToSqlOutput<'_> {
        let borrowed = |value| ToSqlOutput::Borrowed(value);
        match (self, value) {
            (_, None | Some(Value::Null)) => borrowed(ValueRef::Null),
            (SqlType::Integer, Some(Value::Bool(flag))) => {
                borrowed(ValueRef::Integer(i64::from(*flag)))
            }
            (SqlType::Real, Some(Value::Bool(flag))) => {
                borrowed(ValueRef::Real(f64::from(u8::from(*flag))))
            }
            (SqlType::Integer | SqlType::Real, Some(Value::Number(number))) => {
                match (self, number.as_i64(), number.as_f64()) {
                    (SqlType::Integer, Some(int), _) => borrowed(ValueRef::Integer(int)),
                    (_, _, Some(real)) => borrowed(ValueRef::Real(real)),
                    _ => ToSqlOutput::Owned(rusqlite::types::Value::Text(number.to_string())),
                }
            }
            (_, Some(Value::String(text))) => borrowed(ValueRef::Text(text.as_bytes())),
            (_, Some(other)) => ToSqlOutput::Owned(rusqlite::types::Value::Text(
                cell_text(Some(other)).into_owned(),
            )),
        }
    }
}

/// Quotes an identifier for SQL: wrapped in double quotes, inner double
/// quotes doubled. Any name, spaces and semicolons included, stays one
/// identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Encodes `{"tables": {name: [rows]}}` as a database with one table per
/// entry, created in the order given.
///
/// A table's columns are the union of its rows' keys in first-seen order,
/// typed as [`SqlType::of`] says; a key missing from a row is NULL. Fails on
/// any other shape (a key besides `tables`, rows that are not objects), on a
/// table with no columns (no rows, or only empty rows: SQLite has no
/// zero-column tables), and on names SQLite refuses (`sqlite_` prefixes, two
/// tables or columns equal but for case).
pub(super) fn encode(value: &Value, path: &str) -> Result<Vec<u8>> {
    let fail = |message: String| write_error(path, FileType::Sqlite, message);
    let tables = tables_of(value).map_err(fail)?;
    let mut plans = Vec::with_capacity(tables.len());
    for (name, rows) in tables {
        let rows = rows_of(rows).map_err(|message| fail(format!("table `{name}`: {message}")))?;
        let columns: Vec<(&str, SqlType)> = profile_columns(&rows)
            .into_iter()
            .map(|(column, profile)| (column, SqlType::of(profile)))
            .collect();
        if columns.is_empty() {
            return Err(fail(format!(
                "table `{name}` has no columns to create (it needs at least one row with a key)"
            )));
        }
        plans.push((name.as_str(), columns, rows));
    }

    let scratch = scratch_dir()?;
    let db_path = scratch.path().join("berth.sqlite");
    let mut conn = Connection::open(&db_path).map_err(|err| fail(err.to_string()))?;
    // The file is a scratch copy: durability buys nothing here.
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")
        .map_err(|err| fail(err.to_string()))?;
    let tx = conn.transaction().map_err(|err| fail(err.to_string()))?;
    for (name, columns, rows) in &plans {
        let in_table = |err: rusqlite::Error| fail(format!("table `{name}`: {err}"));
        let table = quote_identifier(name);
        let definitions: Vec<String> = columns
            .iter()
            .map(|(column, sql_type)| {
                format!("{} {}", quote_identifier(column), sql_type.keyword())
            })
            .collect();
        tx.execute(
            &format!("CREATE TABLE {table} ({})", definitions.join(", ")),
            [],
        )
        .map_err(in_table)?;
        let names: Vec<String> = columns
            .iter()
            .map(|(column, _)| quote_identifier(column))
            .collect();
        let placeholders = vec!["?"; columns.len()].join(", ");
        let mut insert = tx
            .prepare(&format!(
                "INSERT INTO {table} ({}) VALUES ({placeholders})",
                names.join(", ")
            ))
            .map_err(in_table)?;
        for row in rows {
            let cells = columns
                .iter()
                .map(|(column, sql_type)| sql_type.bind(row.get(*column)));
            insert
                .execute(rusqlite::params_from_iter(cells))
                .map_err(in_table)?;
        }
    }
    tx.commit().map_err(|err| fail(err.to_string()))?;
    conn.close().map_err(|(_, err)| fail(err.to_string()))?;
    fs::read(&db_path).map_err(Error::io("reading", &db_path))
}

fn tables_of(value: &Value) -> std::result::Result<&Map<String, Value>, String> {
    let shape = "SQLite content must be an object {\"tables\": {name: [row objects]}}";
    let Value::Object(top) = value else {
        return Err(format!("{shape}, got {}", kind_of(value)));
    };
    if let Some(other) = top.keys().find(|key| *key != "tables") {
        return Err(format!("{shape}; the key `{other}` is not part of it"));
    }
    match top.get("tables") {
        Some(Value::Object(tables)) => Ok(tables),
        Some(other) => Err(format!("{shape}; `tables` is {}", kind_of(other))),
        None => Err(format!("{shape}; `tables` is missing")),
    }
}

/// Decodes a database into `{"tables": {name: [rows]}}`: every ordinary
/// table (SQLite's own `sqlite_` tables and views left out) in creation
/// order, its rows in storage order, each row an object keyed by column name.
///
/// INTEGER values read back as JSON integers, REAL as floats, TEXT as
/// strings, NULL as null, and BLOB as an array of byte values (0 to 255),
/// since a JSON string would be mistaken for TEXT. Fails on bytes that are
/// not a database, on TEXT that is not UTF-8 and on a REAL with no JSON form
/// (infinity).
pub(super) fn decode(bytes: &[u8], path: &str) -> Result<Value> {
    let fail = |message: String| read_error(path, FileType::Sqlite, message);
    let scratch = scratch_dir()?;
    let db_path = scratch.path().join("berth.sqlite");
    fs::write(&db_path, bytes).map_err(Error::io("writing", &db_path))?;
    let conn = Connection::open_with_flags(
        &db_path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|err| fail(err.to_string()))?;

    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY rowid",
        )
        .and_then(|mut stmt| stmt.query_map([], |row| row.get(0))?.collect())
        .map_err(|err| fail(err.to_string()))?;

    let mut tables = Map::with_capacity(names.len());
    for name in names {
        let rows = read_table(&conn, &name)
            .map_err(|message| fail(format!("table `{name}`: {message}")))?;
        tables.insert(name, Value::Array(rows));
    }
    let mut top = Map::with_capacity(1);
    top.insert("tables".to_owned(), Value::Object(tables));
    Ok(Value::Object(top))
}

fn read_table(conn: &Connection, name: &str) -> std::result::Result<Vec<Value>, String> {
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM {}", quote_identifier(name)))
        .map_err(|err| err.to_string())?;
    let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let mut rows = stmt.query([]).map_err(|err| err.to_string())?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|err| err.to_string())? {
        let mut object = Map::with_capacity(columns.len());
        for (index, column) in columns.iter().enumerate() {
            let cell = row.get_ref(index).map_err(|err| err.to_string())?;
            let value = json_of(cell).map_err(|message| format!("column `{column}`: {message}"))?;
            object.insert(column.clone(), value);
        }
        out.push(Value::Object(object));
    }
    Ok(out)
}

fn json_of(cell: ValueRef<'_>) -> std::result::Result<Value, String> {
    Ok(match cell {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(int) => Value::from(int),
        ValueRef::Real(real) => Number::from_f64(real)
            .map(Value::Number)
            .ok_or_else(|| format!("the REAL value {real} has no JSON form"))?,
        ValueRef::Text(text) => Value::String(
            std::str::from_utf8(text)
                .map_err(|err| format!("TEXT that is not UTF-8: {err}"))?
                .to_owned(),
        ),
        ValueRef::Blob(blob) => Value::Array(blob.iter().map(|&byte| Value::from(byte)).collect()),
    })
}

fn scratch_dir() -> Result<tempfile::TempDir> {
    let base = std::env::temp_dir();
    tempfile::Builder::new()
        .prefix("berth-sqlite-")
        .tempdir_in(&base)
        .map_err(Error::io("creating temporary directory in", &base))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use std::path::Path;

    use super::*;

    /// Writes `value` as a database file in `dir` and opens it.
    fn written(dir: &Path, value: &Value) -> Connection {
        let bytes = encode(value, "t.db").unwrap();
        let file = dir.join("t.db");
        fs::write(&file, bytes).unwrap();
        Connection::open(&file).unwrap()
    }

    fn column_types(conn: &Connection, table: &str) -> Vec<(String, String)> {
        let mut stmt = conn
            .prepare(&format!("PRAGMA table_info({})", quote_identifier(table)))
            .unwrap();
        stmt.query_map([], |row| Ok((row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn sqlite_column_types_follow_the_values() {
        let dir = tempfile::tempdir().unwrap();
        let content = json!({"tables": {"t": [
            {"int": 1, "real": 1.5, "mixed_num": 1, "text": "a", "mixed": 1, "flag": true, "nested": [1], "nulls": null},
            {"int": null, "real": 2, "mixed_num": 2.5, "text": "b", "mixed": "x", "flag": false, "nested": {"k": "v"}},
            {"int": -3, "late": 7}
        ]}});
        let conn = written(dir.path(), &content);
        let pairs = |names: &[(&str, &str)]| -> Vec<(String, String)> {
            names
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        assert_eq!(
            column_types(&conn, "t"),
            pairs(&[
                ("int", "INTEGER"),
                ("real", "REAL"),
                ("mixed_num", "REAL"),
                ("text", "TEXT"),
                ("mixed", "TEXT"),
                ("flag", "INTEGER"),
                ("nested", "TEXT"),
                ("nulls", "TEXT"),
                ("late", "INTEGER"),
            ])
        );
        let stored: (i64, String, String) = conn
            .query_row("SELECT flag, nested, mixed FROM t LIMIT 1", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .unwrap();
        assert_eq!(stored, (1, "[1]".to_owned(), "1".to_owned()));
    }

    #[test]
    fn sqlite_round_trips_ints_reals_text_and_null() {
        let content = json!({"tables": {
            "people": [
                {"id": 1, "name": "ann", "score": 9.5, "note": null},
                {"id": 2, "name": "bob", "score": -0.25, "note": "late"},
                {"id": 9_007_199_254_740_993_i64, "name": "", "score": null, "note": "ünï"}
            ],
            "second": [{"x": "only"}]
        }});
        let bytes = encode(&content, "t.db").unwrap();
        assert_eq!(decode(&bytes, "t.db").unwrap(), content);
        let keys: Vec<String> = decode(&bytes, "t.db").unwrap()["tables"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["people", "second"]);
    }

    #[test]
    fn sqlite_quotes_nasty_table_and_column_names() {
        let dir = tempfile::tempdir().unwrap();
        let table = "we\"ird tab; DROP TABLE victim; --";
        let column = "col \"quoted\", with space";
        let mut tables = Map::new();
        tables.insert("victim".to_owned(), json!([{"keep": 1}]));
        tables.insert(table.to_owned(), json!([{column: "v", "select": 2}]));
        let content = json!({"tables": tables});
        let conn = written(dir.path(), &content);
        assert_eq!(
            column_types(&conn, table),
            [
                (column.to_owned(), "TEXT".to_owned()),
                ("select".to_owned(), "INTEGER".to_owned())
            ]
        );
        let bytes = encode(&content, "t.db").unwrap();
        assert_eq!(decode(&bytes, "t.db").unwrap(), content);
    }

    #[test]
    fn sqlite_reads_booleans_as_integers_and_nested_values_as_json_text() {
        let content = json!({"tables": {"t": [{"flag": true, "doc": {"a": [1, 2]}, "num_text": 5, "s": "x"}]}});
        let back = decode(&encode(&content, "t.db").unwrap(), "t.db").unwrap();
        assert_eq!(
            back,
            json!({"tables": {"t": [{"flag": 1, "doc": "{\"a\":[1,2]}", "num_text": 5, "s": "x"}]}})
        );
    }

    #[test]
    fn sqlite_reads_blobs_as_byte_arrays_and_skips_views() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("b.db");
        let conn = Connection::open(&file).unwrap();
        conn.execute_batch("CREATE TABLE b (data BLOB, n REAL); CREATE VIEW v AS SELECT * FROM b;")
            .unwrap();
        conn.execute("INSERT INTO b VALUES (?1, 1.0)", [&[0u8, 255, 7][..]])
            .unwrap();
        drop(conn);
        let back = decode(&fs::read(&file).unwrap(), "b.db").unwrap();
        assert_eq!(
            back,
            json!({"tables": {"b": [{"data": [0, 255, 7], "n": 1.0}]}})
        );
    }

    #[test]
    fn sqlite_empty_tables_map_is_an_empty_database() {
        let content = json!({"tables": {}});
        assert_eq!(
            decode(&encode(&content, "t.db").unwrap(), "t.db").unwrap(),
            content
        );
    }

    #[test]
    fn sqlite_refuses_wrong_shapes() {
        for content in [
            json!([{"a": 1}]),
            json!({"rows": []}),
            json!({"tables": {"t": [{"a": 1}]}, "extra": 1}),
            json!({"tables": [1]}),
            json!({"tables": {"t": {"a": 1}}}),
            json!({"tables": {"t": [1, 2]}}),
            json!({"tables": {"t": []}}),
            json!({"tables": {"t": [{}]}}),
            json!({"tables": {"sqlite_master2": [{"a": 1}]}}),
            json!({"tables": {"t": [{"A": 1, "a": 2}]}}),
        ] {
            let err = encode(&content, "t.db").unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::FileWrite {
                        file_type: FileType::Sqlite,
                        ..
                    }
                ),
                "{content}: {err}"
            );
        }
    }

    #[test]
    fn sqlite_bytes_that_are_not_a_database_are_a_read_error() {
        let err = decode(
            b"definitely not sqlite, just text that is long enough",
            "x.db",
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                Error::FileRead {
                    file_type: FileType::Sqlite,
                    ..
                }
            ),
            "{err}"
        );
    }
}
