//! CSV and TSV files: a list of row objects under a header line.

use indexmap::IndexSet;
use serde_json::{Map, Value};

use super::columns::{cell_text, rows_of};
use super::{FileType, read_error, write_error};
use crate::error::Result;

fn delimiter(file_type: FileType) -> u8 {
    if file_type == FileType::Tsv {
        b'\t'
    } else {
        b','
    }
}

/// Encodes rows under a header taken from the first row's keys, in order.
///
/// A later row may leave a header key out (an empty cell) but may not bring
/// a key the header lacks: that column would have no header, so it is
/// refused. Cells hold each value's string form: strings as they are,
/// numbers and booleans as JSON text, `null` as an empty cell, arrays and
/// objects as compact JSON. Fields holding the delimiter, a quote or a line
/// break are quoted; lines end in `\r\n`. An empty list is an empty file; a
/// first row with no keys is refused, since it would leave no header to
/// read the rows back by.
pub(super) fn encode(value: &Value, file_type: FileType, path: &str) -> Result<Vec<u8>> {
    let fail = |message: String| write_error(path, file_type, message);
    let rows = rows_of(value).map_err(fail)?;
    let Some(first) = rows.first() else {
        return Ok(Vec::new());
    };
    if first.is_empty() {
        return Err(fail(
            "the first row has no keys, so there is no header".to_owned(),
        ));
    }
    let header: IndexSet<&str> = first.keys().map(String::as_str).collect();
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter(file_type))
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    let csv_error = |err: csv::Error| write_error(path, file_type, err.to_string());
    writer.write_record(&header).map_err(csv_error)?;
    let mut cells = Vec::with_capacity(header.len());
    for (index, row) in rows.iter().enumerate() {
        if let Some(extra) = row.keys().find(|key| !header.contains(key.as_str())) {
            return Err(fail(format!(
                "row at index {index} has the key `{extra}`, which is not in the header taken from the first row"
            )));
        }
        cells.clear();
        cells.extend(header.iter().map(|key| cell_text(row.get(*key))));
        writer
            .write_record(cells.iter().map(|cell| cell.as_bytes()))
            .map_err(csv_error)?;
    }
    writer
        .into_inner()
        .map_err(|err| write_error(path, file_type, err.error().to_string()))
}

/// Decodes a header line and rows into a list of objects whose values are
/// all strings (an empty cell is an empty string). Blank lines are skipped.
/// Fails on a row with a different number of fields than the header, on a
/// header naming one column twice, and on bytes that are not UTF-8.
pub(super) fn decode(bytes: &[u8], file_type: FileType, path: &str) -> Result<Value> {
    let fail = |message: String| read_error(path, file_type, message);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter(file_type))
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|err| fail(err.to_string()))?
        .clone();
    let mut seen = IndexSet::with_capacity(header.len());
    for name in &header {
        if !seen.insert(name) {
            return Err(fail(format!("the header names the column `{name}` twice")));
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|err| fail(err.to_string()))?;
        let row: Map<String, Value> = header
            .iter()
            .zip(&record)
            .map(|(key, cell)| (key.to_owned(), Value::String(cell.to_owned())))
            .collect();
        rows.push(Value::Object(row));
    }
    Ok(Value::Array(rows))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::Error;

    fn csv_text(value: &Value) -> String {
        String::from_utf8(encode(value, FileType::Csv, "f.csv").unwrap()).unwrap()
    }

    #[test]
    fn csv_small_file_has_exact_bytes() {
        let bytes = encode(&json!([{"a": 1, "b": "x"}]), FileType::Csv, "f.csv").unwrap();
        assert_eq!(bytes, b"a,b\r\n1,x\r\n");
    }

    #[test]
    fn csv_header_comes_from_the_first_row_in_its_key_order() {
        let rows = json!([{"b": 1, "a": 2}, {"a": 3, "b": 4}]);
        assert_eq!(csv_text(&rows), "b,a\r\n1,2\r\n4,3\r\n");
    }

    #[test]
    fn csv_quotes_commas_quotes_and_line_breaks_and_reads_them_back() {
        let rows = json!([
            {"text": "a,b", "n": 1},
            {"text": "say \"hi\"", "n": 2},
            {"text": "two\nlines", "n": 3},
            {"text": "crlf\r\nend", "n": 4},
            {"text": "", "n": 5}
        ]);
        assert_eq!(
            csv_text(&rows),
            "text,n\r\n\"a,b\",1\r\n\"say \"\"hi\"\"\",2\r\n\"two\nlines\",3\r\n\"crlf\r\nend\",4\r\n,5\r\n"
        );
        let back = decode(csv_text(&rows).as_bytes(), FileType::Csv, "f.csv").unwrap();
        assert_eq!(
            back,
            json!([
                {"text": "a,b", "n": "1"},
                {"text": "say \"hi\"", "n": "2"},
                {"text": "two\nlines", "n": "3"},
                {"text": "crlf\r\nend", "n": "4"},
                {"text": "", "n": "5"}
            ])
        );
    }

    #[test]
    fn csv_missing_key_is_an_empty_cell() {
        let rows = json!([{"a": 1, "b": 2, "c": 3}, {"c": "z", "a": "x"}]);
        assert_eq!(csv_text(&rows), "a,b,c\r\n1,2,3\r\nx,,z\r\n");
    }

    #[test]
    fn csv_key_outside_the_header_is_a_write_error() {
        let rows = json!([{"a": 1}, {"a": 2, "extra": 3}]);
        let err = encode(&rows, FileType::Csv, "f.csv").unwrap_err();
        let Error::FileWrite {
            message,
            file_type: FileType::Csv,
            ..
        } = &err
        else {
            panic!("unexpected {err}");
        };
        assert!(
            message.contains("index 1") && message.contains("`extra`"),
            "{message}"
        );
    }

    #[test]
    fn csv_cells_hold_each_values_string_form() {
        let rows = json!([{"s": "x", "i": -7, "f": 1.5, "t": true, "n": null, "arr": [1, "a"], "obj": {"k": 1}}]);
        assert_eq!(
            csv_text(&rows),
            "s,i,f,t,n,arr,obj\r\nx,-7,1.5,true,,\"[1,\"\"a\"\"]\",\"{\"\"k\"\":1}\"\r\n"
        );
    }

    #[test]
    fn csv_round_trips_as_strings_and_an_empty_list_is_an_empty_file() {
        let rows = json!([{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}]);
        let back = decode(csv_text(&rows).as_bytes(), FileType::Csv, "f.csv").unwrap();
        assert_eq!(
            back,
            json!([{"id": "1", "name": "ann"}, {"id": "2", "name": "bob"}])
        );
        // What it reads back writes the same bytes again.
        assert_eq!(csv_text(&back), csv_text(&rows));

        assert_eq!(encode(&json!([]), FileType::Csv, "f.csv").unwrap(), b"");
        assert_eq!(decode(b"", FileType::Csv, "f.csv").unwrap(), json!([]));
    }

    #[test]
    fn csv_a_lone_empty_cell_stays_a_row() {
        let rows = json!([{"a": ""}, {"a": null}]);
        let bytes = encode(&rows, FileType::Csv, "f.csv").unwrap();
        assert_eq!(
            decode(&bytes, FileType::Csv, "f.csv").unwrap(),
            json!([{"a": ""}, {"a": ""}])
        );
    }

    #[test]
    fn csv_refuses_rows_that_are_not_objects_and_a_keyless_first_row() {
        for content in [
            json!("a,b"),
            json!({"a": 1}),
            json!([{"a": 1}, [1, 2]]),
            json!([{}]),
        ] {
            let err = encode(&content, FileType::Csv, "f.csv").unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::FileWrite {
                        file_type: FileType::Csv,
                        ..
                    }
                ),
                "{content}: {err}"
            );
        }
    }

    #[test]
    fn csv_read_errors_are_typed() {
        for bytes in [
            &b"a,b\r\n1,2,3\r\n"[..],
            b"a,a\r\n1,2\r\n",
            b"a\r\n\xff\r\n",
        ] {
            let err = decode(bytes, FileType::Csv, "f.csv").unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::FileRead {
                        file_type: FileType::Csv,
                        ..
                    }
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn tsv_uses_tabs_quotes_fields_with_tabs_and_round_trips() {
        let rows =
            json!([{"a": 1, "b": "x"}, {"a": "tab\there", "b": "comma,ok"}, {"b": "only b"}]);
        let bytes = encode(&rows, FileType::Tsv, "f.tsv").unwrap();
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            "a\tb\r\n1\tx\r\n\"tab\there\"\tcomma,ok\r\n\tonly b\r\n"
        );
        assert_eq!(
            decode(&bytes, FileType::Tsv, "f.tsv").unwrap(),
            json!([{"a": "1", "b": "x"}, {"a": "tab\there", "b": "comma,ok"}, {"a": "", "b": "only b"}])
        );
        let err = encode(&json!([{"a": 1}, {"b": 2}]), FileType::Tsv, "f.tsv").unwrap_err();
        assert!(
            matches!(
                err,
                Error::FileWrite {
                    file_type: FileType::Tsv,
                    ..
                }
            ),
            "{err}"
        );
    }
}
