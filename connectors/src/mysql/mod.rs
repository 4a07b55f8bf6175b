//! MySQL / MariaDB source and sink (in progress).
