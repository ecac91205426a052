# Sourced by the bench scripts: relevo_conf FILE LIMITS... writes a one-thread relevo
# config on 127.0.0.1:29110 over the two backends on 29101/29102, with LIMITS lines
# (e.g. "max_connections = 20000") under [limits].
relevo_conf() {
    local file=$1; shift
    {
        printf 'listen = "127.0.0.1:29110"\nthreads = 1\naccess_log = false\nlog_level = "warn"\n[limits]\n'
        printf '%s\n' "$@"
        printf '[hosts]\n"127.0.0.1" = ["127.0.0.1:29101", "127.0.0.1:29102"]\n'
    } > "$file"
}
