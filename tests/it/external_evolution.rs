//! An external Evolution API server (placeholder while the test is written).
