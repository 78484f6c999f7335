//! Compiles `src/nginx_bits.c` (the bitfields of nginx's structures, laid
//! out by the C compiler; see that file) against the nginx headers nginx-sys
//! found, and tells the tests which nginx binary matches them. `nginx-sys`
//! exports its include paths, defines and build directory to direct
//! dependents; with the `vendored` feature that directory holds a runnable
//! nginx.
use std::env;
use std::path::Path;

fn main() {
    println!("cargo::rerun-if-changed=src/nginx_bits.c");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_INCLUDE");
    println!("cargo::rerun-if-env-changed=DEP_NGINX_CFLAGS");
    let mut bits = cc::Build::new();
    bits.file("src/nginx_bits.c");
    if let Some(includes) = env::var_os("DEP_NGINX_INCLUDE") {
        bits.includes(env::split_paths(&includes));
    }
    if let Ok(flags) = env::var("DEP_NGINX_CFLAGS") {
        for flag in flags.split_whitespace() {
            bits.flag(flag);
        }
    }
    // nginx's headers are not written for -Wextra's unused parameters.
    bits.warnings(false).compile("intermission_nginx_bits");

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
    // `~EXPR` user agents need nginx's regex functions, which an nginx built
    // --without-pcre lacks (the module would then fail to load).
    println!("cargo::rerun-if-env-changed=DEP_NGINX_FEATURES");
    println!("cargo::rustc-check-cfg=cfg(nginx_pcre)");
    if env::var("DEP_NGINX_FEATURES").is_ok_and(|list| list.split(',').any(|f| f == "pcre")) {
        println!("cargo::rustc-cfg=nginx_pcre");
    }
    if let Ok(version) = env::var("DEP_NGINX_VERSION") {
        println!("cargo::rustc-env=INTERMISSION_NGINX_VERSION={version}");
    }
}
