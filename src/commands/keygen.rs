//! `keygen`: a new master key, in a new file only its owner may read (0600),
//! never over an existing one: that would orphan every backup made with it.

use super::Report;
use crate::codec::crypto;
use crate::error::Result;
use serde_json::json;
use std::path::Path;

pub(super) fn keygen(path: &Path) -> Result<Report> {
    super::refuse_folder_of_others(path)?;
    let key = crypto::write_new_key_file(path)?;
    let key_id = key.key_id();
    log::info!("wrote a new key to {} (key id {key_id})", path.display());
    Ok(Report {
        lines: vec![
            format!("wrote {} (key id {key_id}, mode 0600)", path.display()),
            "Keep a copy of this key somewhere safe: without it no backup can be read.".into(),
        ],
        json: json!({ "key_file": path.display().to_string(), "key_id": key_id }),
    })
}
