//! PostgreSQL source and sink (in progress).
