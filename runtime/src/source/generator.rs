//! The built-in generator of synthetic game events.
