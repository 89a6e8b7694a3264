//! Queries as they arrive over HTTP: JSON or EDN bodies, decoded,
//! validated against the running plan, and answers rendered back.
