//! Tells the tests which nginx binary matches the headers this module is built
//! against. `nginx-sys` exports its build directory to direct dependents; with
//! the `vendored` feature that directory holds a runnable nginx.
use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-env-changed=DEP_NGINX_BUILD_DIR");
    if let Ok(dir) = env::var("DEP_NGINX_BUILD_DIR") {
        let binary = Path::new(&dir).join("nginx");
        if binary.exists() {
            println!(
                "cargo::rustc-env=INTERMISSION_NGINX_BINARY={}",
                binary.display()
            );
        }
    }
    if let Ok(version) = env::var("DEP_NGINX_VERSION") {
        println!("cargo::rustc-env=INTERMISSION_NGINX_VERSION={version}");
    }
}
