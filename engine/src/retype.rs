//! A writer's `typeMap`: a job's choice of target type for a source type whose default
//! mapping keeps every value but is not what the user wants in the target.
//!
//! ```yaml
//! writer:
//!   parameter:
//!     typeMap: {"tinyint(1)": boolean, geometry: wkb}
//! ```
//!
//! - `tinyint(1): boolean` — MySQL's `TINYINT(1)` / `BOOL` is a small integer by default
//!   (it can hold -128…127); as a boolean, 0 is false and anything else true. Values other
//!   than 0 and 1 are counted in the summary as changed.
//! - `geometry: wkb` — a MySQL geometry is, by default, its 4-byte SRID then WKB (MySQL's
//!   own format, every bit kept); as `wkb`, the SRID is dropped so the value is standard
//!   WKB that GIS tools read. Values whose SRID was not 0 are counted as changed.
//!
//! The mapping applies to the columns the reader tags with the type (`ferry.type`), in the
//! target's DDL and in each batch before it is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BinaryArray, BooleanArray, Int8Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferry_connectors::spec::Changes;
use serde::Deserialize;
use serde_json::{Map, Value};

/// What a source type becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retype {
    /// An integer flag as a boolean.
    Boolean,
    /// A geometry as standard WKB (its SRID dropped).
    Wkb,
}

/// The source types a `typeMap` can name, and what each can become.
const ALLOWED: &[(&str, &[Retype])] = &[
    ("tinyint(1)", &[Retype::Boolean]),
    ("geometry", &[Retype::Wkb]),
];

/// A writer's `typeMap`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeMap(BTreeMap<String, Retype>);

impl TypeMap {
    /// Takes `typeMap` out of a writer's parameters.
    pub fn take(param: &mut Map<String, Value>) -> Result<Self, String> {
        let Some(v) = param.remove("typeMap") else {
            return Ok(Self::default());
        };
        let map: BTreeMap<String, Retype> = serde_json::from_value(v).map_err(|e| {
            format!("`typeMap`: {e} (e.g. {{\"tinyint(1)\": boolean, geometry: wkb}})")
        })?;
        for (from, to) in &map {
            let from_l = from.to_ascii_lowercase();
            match ALLOWED.iter().find(|(t, _)| *t == from_l) {
                None => {
                    return Err(format!(
                        "`typeMap`: no mapping for source type `{from}` (known: {})",
                        ALLOWED
                            .iter()
                            .map(|(t, _)| *t)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
                Some((_, ok)) if !ok.contains(to) => {
                    return Err(format!("`typeMap`: `{from}` cannot become {to:?}"))
                }
                _ => {}
            }
        }
        Ok(Self(
            map.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        ))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `schema` with the mapped columns retyped, and what to do to each column.
    pub fn apply(&self, schema: &SchemaRef) -> (SchemaRef, Vec<Option<Retype>>) {
        if self.0.is_empty() {
            return (schema.clone(), vec![None; schema.fields().len()]);
        }
        let mut plan = Vec::with_capacity(schema.fields().len());
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| {
                let tag = f
                    .metadata()
                    .get("ferry.type")
                    .map(|t| t.to_ascii_lowercase());
                let to = tag.and_then(|t| self.0.get(&t).copied()).filter(|to| {
                    matches!(
                        (to, f.data_type()),
                        (Retype::Boolean, DataType::Int8) | (Retype::Wkb, DataType::Binary)
                    )
                });
                plan.push(to);
                let mut md = f.metadata().clone();
                match to {
                    None => f.as_ref().clone(),
                    Some(Retype::Boolean) => {
                        md.remove("ferry.type");
                        Field::new(f.name(), DataType::Boolean, f.is_nullable()).with_metadata(md)
                    }
                    Some(Retype::Wkb) => {
                        md.insert("ferry.type", "wkb".to_string());
                        f.as_ref().clone().with_metadata(md)
                    }
                }
            })
            .collect();
        (
            Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())),
            plan,
        )
    }
}

/// `batch`'s columns retyped by `plan` (from [`TypeMap::apply`]), with the values changed.
pub fn convert(
    batch: &RecordBatch,
    plan: &[Option<Retype>],
    schema: &SchemaRef,
) -> Result<(Vec<ArrayRef>, Changes), String> {
    let mut changes = Changes::default();
    let mut columns = batch.columns().to_vec();
    for (i, to) in plan.iter().enumerate() {
        let (Some(to), Some(col)) = (to, columns.get(i)) else {
            continue;
        };
        let name = schema.field(i).name();
        match to {
            Retype::Boolean => {
                let a = col
                    .as_any()
                    .downcast_ref::<Int8Array>()
                    .ok_or_else(|| format!("column `{name}`: not a tinyint(1) column"))?;
                let odd = a.iter().flatten().filter(|v| !matches!(v, 0 | 1)).count();
                if odd > 0 {
                    changes.add(name, "value other than 0 or 1 written as true", odd as u64);
                }
                let b: BooleanArray = a.iter().map(|v| v.map(|v| v != 0)).collect();
                columns[i] = Arc::new(b);
            }
            Retype::Wkb => {
                let a = col
                    .as_any()
                    .downcast_ref::<BinaryArray>()
                    .ok_or_else(|| format!("column `{name}`: not a geometry column"))?;
                let mut srid = 0u64;
                let mut out = Vec::with_capacity(a.len());
                for v in a.iter() {
                    out.push(match v {
                        None => None,
                        Some(v) if v.len() < 4 => {
                            return Err(format!(
                                "column `{name}`: a geometry of {} bytes has no SRID",
                                v.len()
                            ))
                        }
                        Some(v) => {
                            if v[..4] != [0, 0, 0, 0] {
                                srid += 1;
                            }
                            Some(&v[4..])
                        }
                    });
                }
                if srid > 0 {
                    changes.add(name, "SRID dropped (standard WKB has none)", srid);
                }
                columns[i] = Arc::new(BinaryArray::from_iter(out));
            }
        }
    }
    Ok((columns, changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn maps_flags_to_booleans_and_geometries_to_wkb_counting_changes() {
        let mut p: Map<String, Value> =
            serde_json::from_str(r#"{"typeMap": {"TINYINT(1)": "boolean", "geometry": "wkb"}}"#)
                .unwrap();
        let map = TypeMap::take(&mut p).unwrap();
        assert!(p.is_empty());
        let tag = |t: &str| HashMap::from([("ferry.type".to_string(), t.to_string())]);
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("flag", DataType::Int8, true).with_metadata(tag("tinyint(1)")),
            Field::new("n", DataType::Int8, false),
            Field::new("shape", DataType::Binary, true).with_metadata(tag("geometry")),
        ]));
        let (out, plan) = map.apply(&schema);
        assert_eq!(out.field(0).data_type(), &DataType::Boolean);
        assert_eq!(out.field(1).data_type(), &DataType::Int8);
        assert_eq!(plan, [Some(Retype::Boolean), None, Some(Retype::Wkb)]);
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int8Array::from(vec![Some(0), Some(1), Some(5), None])),
                Arc::new(Int8Array::from(vec![1, 2, 3, 4])),
                Arc::new(BinaryArray::from_opt_vec(vec![
                    Some(&[0, 0, 0, 0, 1][..]),
                    Some(&[0xE6, 0x10, 0, 0, 1][..]),
                    None,
                    Some(&[0, 0, 0, 0][..]),
                ])),
            ],
        )
        .unwrap();
        let (cols, changes) = convert(&batch, &plan, &out).unwrap();
        let b = cols[0].as_any().downcast_ref::<BooleanArray>().unwrap();
        assert_eq!(
            b.iter().collect::<Vec<_>>(),
            [Some(false), Some(true), Some(true), None]
        );
        let w = cols[2].as_any().downcast_ref::<BinaryArray>().unwrap();
        assert_eq!(w.value(0), [1]);
        assert_eq!(w.value(1), [1]);
        assert!(w.is_null(2));
        assert_eq!(changes.total(), 2);
        RecordBatch::try_new(out, cols).expect("the columns fit the retyped schema");
    }

    #[test]
    fn unknown_or_unfit_mappings_are_refused() {
        for (text, why) in [
            (
                r#"{"typeMap": {"int": "boolean"}}"#,
                "no mapping for source type `int`",
            ),
            (r#"{"typeMap": {"geometry": "boolean"}}"#, "cannot become"),
            (r#"{"typeMap": {"geometry": "wkt"}}"#, "unknown variant"),
            (r#"{"typeMap": []}"#, "typeMap"),
        ] {
            let mut p: Map<String, Value> = serde_json::from_str(text).unwrap();
            let e = TypeMap::take(&mut p).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
