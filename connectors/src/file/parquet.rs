//! Parquet: the schema comes from the file's footer (the Arrow schema that
//! arrow-rs writers embed, else the Parquet one mapped by arrow-rs); reading
//! streams row groups with ranged reads through opendal, projecting the
//! columns asked for (only their column chunks are fetched).
//!
//! Why our own `AsyncFileReader`: parquet's async reader needs ranged reads;
//! opendal's `Reader::read(range)` is exactly that, on every backend, so no
//! file is ever read whole into memory (one row group's projected columns
//! at a time).

use std::ops::Range;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::arrow::ProjectionMask;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::location::{storage_error, Location};
use super::ReadCtx;
use crate::error::ConnectorError;

/// Ranged reads of one object.
pub(crate) struct OpendalParquetReader {
    reader: opendal::Reader,
    size: u64,
}

impl OpendalParquetReader {
    pub async fn open(loc: &Location, path: &str) -> Result<Self, ConnectorError> {
        let size = loc
            .op
            .stat(path)
            .await
            .map_err(|e| storage_error(path, e))?
            .content_length();
        let reader = loc
            .op
            .reader(path)
            .await
            .map_err(|e| storage_error(path, e))?;
        Ok(Self { reader, size })
    }
}

fn pq_err(e: opendal::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for OpendalParquetReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.reader
                .read(range)
                .await
                .map(|b| b.to_bytes())
                .map_err(pq_err)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            let bufs = self.reader.fetch(ranges).await.map_err(pq_err)?;
            Ok(bufs.into_iter().map(|b| b.to_bytes()).collect())
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let md = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 * 1024))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(md))
        }
        .boxed()
    }
}

async fn builder(
    loc: &Location,
    path: &str,
) -> Result<ParquetRecordBatchStreamBuilder<OpendalParquetReader>, ConnectorError> {
    let r = OpendalParquetReader::open(loc, path).await?;
    ParquetRecordBatchStreamBuilder::new(r)
        .await
        .map_err(|e| ConnectorError::file(path, None, format!("not a readable Parquet file: {e}")))
}

pub async fn schema(loc: &Location, path: &str) -> Result<SchemaRef, ConnectorError> {
    Ok(builder(loc, path).await?.schema().clone())
}

pub(crate) async fn read(ctx: &ReadCtx<'_>) -> Result<u64, ConnectorError> {
    let b = builder(ctx.loc, ctx.path).await?;
    let file_schema = b.schema().clone();
    let mut roots = Vec::with_capacity(ctx.wanted.fields().len());
    for f in ctx.wanted.fields() {
        let (i, _) = file_schema
            .column_with_name(f.name())
            .ok_or_else(|| ctx.err(None, format!("has no column `{}`", f.name())))?;
        roots.push(i);
    }
    let mask = ProjectionMask::roots(b.parquet_schema(), roots);
    let mut stream = b
        .with_projection(mask)
        .with_batch_size(ctx.fetch)
        .build()
        .map_err(|e| ctx.err(None, e.to_string()))?;
    let mut sent = 0u64;
    let mut row = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| ctx.err(None, format!("row {}: {e}", row + 1)))?;
        row += batch.num_rows() as u64;
        sent += ctx.send(batch).await?;
    }
    Ok(sent)
}
