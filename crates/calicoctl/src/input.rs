//! Reading `-f FILE`, `-f -` and `-f DIR` (with `-R`): every document of every file, in order.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use calico_api::documents::{Document, decode_documents};

/// Documents read from one source file, tagged with the file name for messages.
pub struct SourceDocuments {
    pub source: String,
    pub documents: Vec<Document>,
}

/// Read `filename` (`-` = stdin). Directories need `recursive` to descend into sub-directories;
/// only `.yaml`, `.yml` and `.json` files are read from a directory.
pub fn read_sources(filename: &str, recursive: bool) -> Result<Vec<SourceDocuments>> {
    if filename == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        return Ok(vec![decode("stdin", &text)?]);
    }
    let path = Path::new(filename);
    let meta = std::fs::metadata(path).with_context(|| format!("cannot read {filename}"))?;
    if meta.is_dir() {
        let mut files = Vec::new();
        collect_files(path, recursive, &mut files)?;
        files.sort();
        let mut out = Vec::new();
        for f in files {
            let text =
                std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
            out.push(decode(&f.display().to_string(), &text)?);
        }
        Ok(out)
    } else {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {filename}"))?;
        Ok(vec![decode(filename, &text)?])
    }
}

fn decode(source: &str, text: &str) -> Result<SourceDocuments> {
    match decode_documents(text) {
        Ok(documents) => Ok(SourceDocuments {
            source: source.to_string(),
            documents,
        }),
        Err(e) => bail!("{source}: {e}"),
    }
}

fn collect_files(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?
    {
        let entry = entry?;
        let path = entry.path();
        if path.is_dir() {
            if recursive {
                collect_files(&path, recursive, out)?;
            }
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            out.push(path);
        }
    }
    Ok(())
}
