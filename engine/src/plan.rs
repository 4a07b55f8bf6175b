//! `ferry job plan`: what a job would do, without touching the target: the tables it moves
//! and where to, the DDL it would run (by stage), and every conversion that loses or changes
//! something, flagged. The source is read (its catalog only); the target is not opened.

use std::fmt;
use std::sync::Arc;

use ferry_connectors::ddl::{self, TableDdl};
use ferry_connectors::Source;

use crate::config::Job;
use crate::run::{read_spec, target_schema, RunError};

/// One table of a plan.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub source: String,
    pub target: String,
    /// Columns read, with their Arrow types, for the record.
    pub columns: usize,
    /// `None`: the target does not create tables (files) or the job does not
    /// (`createTable: false`).
    pub ddl: Option<TableDdl>,
}

/// What a job would do.
#[derive(Debug, Clone, Default)]
pub struct JobPlan {
    pub tables: Vec<TablePlan>,
    pub not_migrated: Vec<String>,
}

impl JobPlan {
    /// Every flagged conversion, `table: note`.
    pub fn notes(&self) -> Vec<String> {
        self.tables
            .iter()
            .flat_map(|t| {
                t.ddl
                    .iter()
                    .flat_map(move |d| d.notes.iter().map(move |n| format!("{}: {n}", t.source)))
            })
            .collect()
    }
}

impl fmt::Display for JobPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.tables {
            writeln!(f, "-- {} -> {} ({} columns)", t.source, t.target, t.columns)?;
            let Some(d) = &t.ddl else {
                writeln!(
                    f,
                    "-- (no DDL: createTable is off, or the target makes no tables)"
                )?;
                continue;
            };
            for (stage, steps) in [
                ("before the load", &d.create),
                ("after the load", &d.after_load),
                ("once every table is loaded", &d.constraints),
            ] {
                if steps.is_empty() {
                    continue;
                }
                writeln!(f, "-- {stage}")?;
                for s in steps {
                    writeln!(f, "{};", s.sql)?;
                }
            }
            for n in &d.notes {
                writeln!(f, "-- ! {n}")?;
            }
            writeln!(f)?;
        }
        for n in &self.not_migrated {
            writeln!(f, "-- not migrated: {n}")?;
        }
        let notes = self.notes().len();
        write!(
            f,
            "-- {} tables, {notes} flagged conversions{}",
            self.tables.len(),
            if notes > 0 { " (lines with !)" } else { "" }
        )
    }
}

/// Plans `job` (a one-table or whole-database job whose reader this process can reach).
pub async fn plan_job(job: &Job) -> Result<JobPlan, RunError> {
    if job.reader.merge.is_some() {
        return plan_merge(job).await;
    }
    let source = crate::registry::open_source(&job.reader).await?;
    let reader = |stage| {
        move |e: ferry_connectors::ConnectorError| RunError::Reader {
            stage,
            message: e.to_string(),
        }
    };
    let mut plan = JobPlan::default();
    let tables: Vec<(Job, String)> = match &job.reader.tables {
        None => vec![(
            job.clone(),
            job.reader.spec.table.clone().unwrap_or_default(),
        )],
        Some(selection) => {
            let listing = source
                .list_tables()
                .await
                .map_err(reader("listing the source's tables"))?;
            plan.not_migrated = listing.not_migrated;
            selection
                .select(&listing.tables)
                .into_iter()
                .map(|t| {
                    let mut one = job.clone();
                    one.reader.tables = None;
                    one.reader.spec.table = Some(t.clone());
                    one.writer.spec.table = job.writer.naming.target(&t, job.writer.kind);
                    (one, t)
                })
                .collect()
        }
    };
    let naming = job.reader.tables.as_ref().map(|_| &job.writer.naming);
    for (one, name) in tables {
        plan.tables
            .push(plan_table(&one, source.clone(), name, naming).await?);
    }
    Ok(plan)
}

/// Plans sharded `job`: its shard tables (their columns compared) into its one target.
async fn plan_merge(job: &Job) -> Result<JobPlan, RunError> {
    let (sources, listings) = crate::merge::open_shards(job).await?;
    let reading_for = move |i: usize, _: &str| -> Arc<dyn crate::run::Reading> {
        Arc::new(crate::local::LocalReading::new(sources[i].clone()))
    };
    let r = crate::merge::resolve(job, &listings, &reading_for).await?;
    let ddl = ddl::render(job.writer.kind, &r.wspec, &r.tschema).map_err(|source| {
        RunError::Connector {
            stage: "rendering the target's DDL",
            source,
        }
    })?;
    let labels = r.labels();
    Ok(JobPlan {
        tables: vec![TablePlan {
            source: format!("{} shard tables: {}", labels.len(), labels.join(", ")),
            target: r.wspec.table.clone(),
            columns: r.tschema.fields().len(),
            ddl,
        }],
        not_migrated: Vec::new(),
    })
}

async fn plan_table(
    job: &Job,
    source: Arc<dyn Source>,
    name: String,
    naming: Option<&crate::database::TableNaming>,
) -> Result<TablePlan, RunError> {
    let reader = |stage| {
        move |e: ferry_connectors::ConnectorError| RunError::Reader {
            stage,
            message: e.to_string(),
        }
    };
    let rspec = read_spec(job);
    let schema = source
        .schema(&rspec)
        .await
        .map_err(reader("reading the source schema"))?;
    let tschema =
        target_schema(&schema, &job.writer.spec.columns).map_err(|source| RunError::Connector {
            stage: "mapping columns",
            source,
        })?;
    let (tschema, _) = job.writer.type_map.apply(&tschema);
    let mut wspec = job.writer.spec.clone();
    if wspec.create_table {
        let reading = crate::local::LocalReading::new(source);
        wspec.described = crate::run::described(&reading, &rspec, &schema, &tschema, naming)
            .await
            .map_err(|message| RunError::Reader {
                stage: "describing the source table",
                message,
            })?;
    }
    let ddl =
        ddl::render(job.writer.kind, &wspec, &tschema).map_err(|source| RunError::Connector {
            stage: "rendering the target's DDL",
            source,
        })?;
    Ok(TablePlan {
        source: if name.is_empty() {
            "(query)".into()
        } else {
            name
        },
        target: wspec.table.clone(),
        columns: tschema.fields().len(),
        ddl,
    })
}
