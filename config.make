# The Makefile part of nginx's build (see config): the module's static library,
# built by cargo against this configured tree whenever `make` runs (cargo
# itself decides whether anything changed), and the .so linked after it.
# make runs in nginx's source directory (CURDIR), wherever --builddir put
# objs/: nginx-sys is told both.
#
# cargo runs with the lock file (--locked), from the module's directory, into
# objs/addon/intermission/target (or NGX_INTERMISSION_TARGET_DIR); the library
# is copied to objs/addon/intermission/ so that the .so's link line names a
# fixed path. `export-modules` is off: nginx's generated module table takes
# its place.

ngx_intermission_profile_flag=
if [ "$ngx_intermission_profile" = release ]; then
    ngx_intermission_profile_flag=--release
fi

cat << END                                                  >> $NGX_MAKEFILE

$NGX_OBJS${ngx_dirsep}ngx_http_intermission_module$ngx_modext:	$ngx_intermission_lib

$ngx_intermission_lib:	ngx_intermission_cargo
	cd "$ngx_addon_dir" && NGINX_SOURCE_DIR="\$(CURDIR)" NGINX_BUILD_DIR="$ngx_intermission_objs" \\
		$ngx_intermission_cargo rustc --locked --lib $ngx_intermission_profile_flag \\
		--no-default-features \\
		--target-dir "$ngx_intermission_target" \\
		--crate-type staticlib
	mkdir -p "$ngx_intermission_dir"
	cp "$ngx_intermission_target/$ngx_intermission_profile/libngx_http_intermission_module.a" \\
		"$ngx_intermission_lib"

ngx_intermission_cargo:

.PHONY:	ngx_intermission_cargo

END
