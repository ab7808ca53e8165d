//! Embeds GraphiQL's JS and CSS (and the React UMD builds it runs on) into the binary,
//! so `GET /graphql` works offline and no CDN is ever contacted.
//!
//! The files come from the npm packages pinned in `web/package.json` and
//! `web/package-lock.json`; they are installed with `npm ci` into `OUT_DIR`, never into
//! the source tree, and never committed. To update GraphiQL, change the versions in
//! `web/package.json`, run `npm install --package-lock-only` in `web/`, and rebuild.
//! Without npm the build still succeeds: the page then explains what is missing.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

const ASSETS: [(&str, &str); 4] = [
    ("graphiql.min.js", "graphiql/graphiql.min.js"),
    ("graphiql.min.css", "graphiql/graphiql.min.css"),
    ("react.production.min.js", "react/umd/react.production.min.js"),
    ("react-dom.production.min.js", "react-dom/umd/react-dom.production.min.js"),
];

fn main() {
    println!("cargo:rerun-if-changed=web/package.json");
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-changed=migrations");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let web = out.join("web");
    let assets = out.join("graphiql");
    fs::create_dir_all(&assets).unwrap();

    let installed = install(&web);
    for (name, source) in ASSETS {
        let target = assets.join(name);
        let from = web.join("node_modules").join(source);
        if installed && from.is_file() {
            fs::copy(&from, &target).unwrap();
        } else {
            println!("cargo:warning=GraphiQL asset {source} not available; GET /graphql will say so");
            fs::write(&target, "").unwrap();
        }
    }
}

/// `npm ci` into `OUT_DIR/web`, skipped when that lockfile is already installed.
fn install(web: &Path) -> bool {
    let lock = fs::read("web/package-lock.json").unwrap_or_default();
    let stamp = web.join("node_modules/.authgraph-lock");
    if fs::read(&stamp).is_ok_and(|s| s == lock) {
        return true;
    }
    fs::create_dir_all(web).unwrap();
    for file in ["package.json", "package-lock.json"] {
        fs::copy(Path::new("web").join(file), web.join(file)).unwrap();
    }
    let ok = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"])
        .current_dir(web)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        fs::write(&stamp, lock).unwrap();
    }
    ok
}
