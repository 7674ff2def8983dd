//! Nothing here: the suite is in `tests/` (see README.md).
