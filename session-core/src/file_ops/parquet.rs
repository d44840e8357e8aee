//! Parquet files: a list of flat row objects, one column per key.
//!
//! Written with the low-level `parquet` API (no Arrow): one row group, every
//! column OPTIONAL so that null and missing keys have a representation.

use std::sync::Arc;

use parquet::basic::{Compression as Codec, ConvertedType, Repetition, Type as PhysicalType};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::record::Field;
use parquet::schema::types::Type;
use serde_json::{Map, Number, Value};

use super::columns::{ColumnProfile, Row, cell_text, profile_columns, rows_of};
use super::{FileType, read_error, write_error};
use crate::error::Result;

/// The storage type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParquetType {
    Boolean,
    Int64,
    Double,
    Utf8,
}

impl ParquetType {
    /// BOOLEAN when every non-null value is a boolean, INT64 when every one
    /// is an integer that fits, DOUBLE when every one is a number, UTF8
    /// otherwise (and for a column holding only nulls). A column mixing
    /// booleans and numbers is UTF8: neither type holds both.
    fn of(profile: ColumnProfile) -> ParquetType {
        if !profile.any_value {
            ParquetType::Utf8
        } else if profile.all_bool {
            ParquetType::Boolean
        } else if profile.any_bool || !profile.all_number_or_bool {
            ParquetType::Utf8
        } else if profile.all_int_or_bool {
            ParquetType::Int64
        } else {
            ParquetType::Double
        }
    }

    fn schema_field(self, name: &str) -> parquet::errors::Result<Type> {
        let physical = match self {
            ParquetType::Boolean => PhysicalType::BOOLEAN,
            ParquetType::Int64 => PhysicalType::INT64,
            ParquetType::Double => PhysicalType::DOUBLE,
            ParquetType::Utf8 => PhysicalType::BYTE_ARRAY,
        };
        let converted = if self == ParquetType::Utf8 {
            ConvertedType::UTF8
        } else {
            ConvertedType::NONE
        };
        Type::primitive_type_builder(name, physical)
            .with_repetition(Repetition::OPTIONAL)
            .with_converted_type(converted)
            .build()
    }
}

/// Encodes rows as a Parquet file with one OPTIONAL column per key (the
/// union of the rows' keys in first-seen order), typed as
/// [`ParquetType::of`] says, Snappy-compressed.
///
/// UTF8 cells hold strings as they are and any other value as JSON text, so
/// nested arrays and objects survive as text. A missing key is null. An
/// empty list is a file with no columns and no rows. Fails on rows that are
/// not objects, and on rows that all lack keys (Parquet cannot count rows
/// without a column to hold them).
pub(super) fn encode(value: &Value, path: &str) -> Result<Vec<u8>> {
    let fail = |message: String| write_error(path, FileType::Parquet, message);
    let parquet_error = |err: parquet::errors::ParquetError| fail(err.to_string());
    let rows = rows_of(value).map_err(fail)?;
    let columns: Vec<(&str, ParquetType)> = profile_columns(&rows)
        .into_iter()
        .map(|(name, profile)| (name, ParquetType::of(profile)))
        .collect();
    if columns.is_empty() && !rows.is_empty() {
        return Err(fail(
            "no row has a key, so there is no column to hold the rows".to_owned(),
        ));
    }

    let fields = columns
        .iter()
        .map(|(name, parquet_type)| parquet_type.schema_field(name).map(Arc::new))
        .collect::<parquet::errors::Result<Vec<_>>>()
        .map_err(parquet_error)?;
    let schema = Type::group_type_builder("schema")
        .with_fields(fields)
        .build()
        .map_err(parquet_error)?;
    let properties = WriterProperties::builder()
        .set_compression(Codec::SNAPPY)
        .build();
    let mut writer = SerializedFileWriter::new(Vec::new(), Arc::new(schema), Arc::new(properties))
        .map_err(parquet_error)?;
    if !rows.is_empty() {
        let mut group = writer.next_row_group().map_err(parquet_error)?;
        for (name, parquet_type) in &columns {
            let Some(mut column) = group.next_column().map_err(parquet_error)? else {
                return Err(fail(format!("the writer has no column for `{name}`")));
            };
            write_column(&mut column, &rows, name, *parquet_type).map_err(parquet_error)?;
            column.close().map_err(parquet_error)?;
        }
        group.close().map_err(parquet_error)?;
    }
    writer.into_inner().map_err(parquet_error)
}

/// Writes one column's values with definition levels: 1 for a value, 0 for
/// null or a missing key.
fn write_column(
    column: &mut SerializedColumnWriter<'_>,
    rows: &[&Row],
    name: &str,
    parquet_type: ParquetType,
) -> parquet::errors::Result<()> {
    let cells: Vec<Option<&Value>> = rows
        .iter()
        .map(|row| row.get(name).filter(|value| !value.is_null()))
        .collect();
    let levels: Vec<i16> = cells.iter().map(|cell| i16::from(cell.is_some())).collect();
    let present = cells.iter().flatten();
    match parquet_type {
        ParquetType::Boolean => {
            let values: Vec<bool> = present.map(|value| value.as_bool() == Some(true)).collect();
            column
                .typed::<BoolType>()
                .write_batch(&values, Some(&levels), None)?;
        }
        ParquetType::Int64 => {
            let values: Vec<i64> = present
                .map(|value| value.as_i64().unwrap_or_default())
                .collect();
            column
                .typed::<Int64Type>()
                .write_batch(&values, Some(&levels), None)?;
        }
        ParquetType::Double => {
            let values: Vec<f64> = present
                .map(|value| value.as_f64().unwrap_or(f64::NAN))
                .collect();
            column
                .typed::<DoubleType>()
                .write_batch(&values, Some(&levels), None)?;
        }
        ParquetType::Utf8 => {
            let values: Vec<ByteArray> = present
                .map(|value| ByteArray::from(cell_text(Some(value)).into_owned().into_bytes()))
                .collect();
            column
                .typed::<ByteArrayType>()
                .write_batch(&values, Some(&levels), None)?;
        }
    }
    Ok(())
}

/// Decodes a Parquet file into a list of row objects keyed by column name, in
/// schema order.
///
/// Booleans, integers, floats and strings read back as their JSON kinds,
/// null as null; binary values as arrays of byte values (0 to 255); dates,
/// times, timestamps and decimals as the string Parquet renders for them;
/// nested groups, lists and maps as objects and arrays. Fails on bytes that
/// are not a Parquet file and on a float with no JSON form (NaN, infinity).
pub(super) fn decode(bytes: &[u8], path: &str) -> Result<Value> {
    let fail = |message: String| read_error(path, FileType::Parquet, message);
    let reader = SerializedFileReader::new(bytes::Bytes::copy_from_slice(bytes))
        .map_err(|err| fail(err.to_string()))?;
    let mut rows = Vec::new();
    for row in reader
        .get_row_iter(None)
        .map_err(|err| fail(err.to_string()))?
    {
        let row = row.map_err(|err| fail(err.to_string()))?;
        rows.push(
            object_of(&row)
                .map_err(|message| fail(format!("row at index {}: {message}", rows.len())))?,
        );
    }
    Ok(Value::Array(rows))
}

fn object_of(row: &parquet::record::Row) -> std::result::Result<Value, String> {
    let mut object = Map::with_capacity(row.len());
    for (name, field) in row.get_column_iter() {
        let value = json_of(field).map_err(|message| format!("column `{name}`: {message}"))?;
        object.insert(name.clone(), value);
    }
    Ok(Value::Object(object))
}

fn json_of(field: &Field) -> std::result::Result<Value, String> {
    let float = |number: f64| {
        Number::from_f64(number)
            .map(Value::Number)
            .ok_or_else(|| format!("the float {number} has no JSON form"))
    };
    Ok(match field {
        Field::Null => Value::Null,
        Field::Bool(flag) => Value::Bool(*flag),
        Field::Byte(number) => Value::from(*number),
        Field::Short(number) => Value::from(*number),
        Field::Int(number) => Value::from(*number),
        Field::Long(number) => Value::from(*number),
        Field::UByte(number) => Value::from(*number),
        Field::UShort(number) => Value::from(*number),
        Field::UInt(number) => Value::from(*number),
        Field::ULong(number) => Value::from(*number),
        Field::Float16(number) => float(f64::from(*number))?,
        Field::Float(number) => float(f64::from(*number))?,
        Field::Double(number) => float(*number)?,
        Field::Str(text) => Value::String(text.clone()),
        Field::Bytes(bytes) => {
            Value::Array(bytes.data().iter().map(|&byte| Value::from(byte)).collect())
        }
        Field::Decimal(_)
        | Field::Date(_)
        | Field::TimeMillis(_)
        | Field::TimeMicros(_)
        | Field::TimestampMillis(_)
        | Field::TimestampMicros(_) => Value::String(field.to_string()),
        Field::Group(group) => object_of(group)?,
        Field::ListInternal(list) => Value::Array(
            list.elements()
                .iter()
                .map(json_of)
                .collect::<std::result::Result<_, _>>()?,
        ),
        Field::MapInternal(map) => {
            let mut object = Map::with_capacity(map.len());
            for (key, value) in map.entries() {
                let key = match key {
                    Field::Str(text) => text.clone(),
                    other => other.to_string(),
                };
                object.insert(key, json_of(value)?);
            }
            Value::Object(object)
        }
    })
}

#[cfg(test)]
mod tests {
    use parquet::basic::Type as PhysicalType;
    use serde_json::json;

    use super::*;
    use crate::error::Error;

    #[test]
    fn parquet_round_trips_ints_floats_bools_strings_and_nulls() {
        let rows = json!([
            {"id": 1, "ratio": 0.5, "ok": true, "name": "ann", "maybe": null},
            {"id": -2, "ratio": 1e300, "ok": false, "name": "", "maybe": 3},
            {"id": null, "ratio": null, "ok": null, "name": null, "maybe": null},
            {"id": i64::MAX, "ratio": -2.25, "ok": true, "name": "ünï ✓", "maybe": 4}
        ]);
        let bytes = encode(&rows, "t.parquet").unwrap();
        assert_eq!(decode(&bytes, "t.parquet").unwrap(), rows);

        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr_ptr();
        let types: Vec<(String, PhysicalType)> = schema
            .columns()
            .iter()
            .map(|column| (column.name().to_owned(), column.physical_type()))
            .collect();
        assert_eq!(
            types,
            [
                ("id".to_owned(), PhysicalType::INT64),
                ("ratio".to_owned(), PhysicalType::DOUBLE),
                ("ok".to_owned(), PhysicalType::BOOLEAN),
                ("name".to_owned(), PhysicalType::BYTE_ARRAY),
                ("maybe".to_owned(), PhysicalType::INT64),
            ]
        );
        assert_eq!(reader.metadata().file_metadata().num_rows(), 4);
    }

    #[test]
    fn parquet_missing_keys_are_null_and_mixed_columns_are_text() {
        let rows = json!([
            {"a": 1, "mix": true, "nested": {"k": [1, 2]}, "num": 1},
            {"b": "late", "mix": 2, "nested": [1], "num": 2.5}
        ]);
        let back = decode(&encode(&rows, "t.parquet").unwrap(), "t.parquet").unwrap();
        assert_eq!(
            back,
            json!([
                {"a": 1, "mix": "true", "nested": "{\"k\":[1,2]}", "num": 1.0, "b": null},
                {"a": null, "mix": "2", "nested": "[1]", "num": 2.5, "b": "late"}
            ])
        );
    }

    #[test]
    fn parquet_empty_list_round_trips() {
        let bytes = encode(&json!([]), "t.parquet").unwrap();
        assert_eq!(decode(&bytes, "t.parquet").unwrap(), json!([]));
    }

    #[test]
    fn parquet_refuses_wrong_shapes_and_reads_garbage_as_an_error() {
        for content in [json!({"a": 1}), json!([1]), json!([{}, {}]), json!("rows")] {
            let err = encode(&content, "t.parquet").unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::FileWrite {
                        file_type: FileType::Parquet,
                        ..
                    }
                ),
                "{content}: {err}"
            );
        }
        let err = decode(b"PAR1 not really", "t.parquet").unwrap_err();
        assert!(
            matches!(
                err,
                Error::FileRead {
                    file_type: FileType::Parquet,
                    ..
                }
            ),
            "{err}"
        );
    }
}
