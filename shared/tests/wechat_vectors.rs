//! WeChat Pay APIv3 vectors.
