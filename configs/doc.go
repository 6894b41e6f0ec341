// Package configs owns the recorder's configuration: the typed [Config], its
// defaults, how it is read from the environment and a YAML file, and what
// makes it valid.
//
// # One table
//
// Every setting is one entry of a table (settings.go) that gives its
// environment variable, its YAML key, its default, how its text becomes the
// typed field, its validation and a one-line description. Loading, defaults,
// error messages, the check of the example file (recorder.yaml) and the
// README's configuration table all come from that table, so a setting is
// added or changed in one place.
//
// # Sources
//
// [Load] starts from [Default], then takes each setting from, in order of
// precedence:
//
//   - the YAML file named by CONFIG_FILE, when the file sets the key to
//     something other than null;
//   - the environment variable, when it is not empty;
//   - the default.
//
// The file mirrors [Config]: one mapping per group with lower_snake keys
// (http: {port: 8000}). Durations are strings ("10s"), lists are YAML
// sequences; in the environment lists are comma-separated. A key the table
// does not know, a key given twice, or a value of the wrong shape (a list
// where one value is expected, or the reverse) is an error naming the key.
// LOG_LEVEL and API_AUTH are parsed while loading, into a slog.Level and a
// bool, so the struct holds no text to be re-read later.
//
// # Errors
//
// A setting that does not parse or is not valid stops start-up with one line
// that starts with its environment variable (and, for a value from the file,
// its key and line). When several are wrong, the first in table order is
// reported, so the message is the same from run to run. The values of
// secrets (LIVEKIT_API_SECRET, PIPELINE_WEBHOOK_SECRET, REDIS_PASSWORD)
// never appear in an error, nor does a Redis address holding user info
// (user:password@host:port), which is refused.
//
// [Config.Validate] only checks: values derived from settings (the LiveKit
// HTTP URL, the listen address, whether S3 is on, which pair signs the
// pipeline webhook, whether Redis is on) are methods, computed where they
// are used.
//
// # Fleet
//
// With Redis set ([Redis.Enabled]), instances sharing it run as one fleet;
// without, the instance runs alone and the fleet settings are unused. The
// file's redis block has the keys of livekit-server's own (address,
// username, password, db, use_tls, sentinel_master_name,
// sentinel_addresses, cluster_addresses), so the server's block can be
// pasted; keys of it that the recorder does not read (sentinel_username,
// tls, timeouts, pool sizes) are refused as unknown, not ignored. Redis is
// reached one way:
//
//   - one server: REDIS_ADDRESS;
//   - Sentinel: REDIS_SENTINEL_ADDRESSES with REDIS_SENTINEL_MASTER_NAME
//     (both or neither), without REDIS_ADDRESS;
//   - a cluster: REDIS_CLUSTER_ADDRESSES, with neither of the above and
//     REDIS_DB 0.
//
// Every address is host:port, a host name or IP and a numeric port 1 to
// 65535. REDIS_USERNAME, REDIS_PASSWORD, a REDIS_DB other than 0 or
// REDIS_USE_TLS on, with Redis off, is an error naming REDIS_ADDRESS: a
// credential or option that nothing reads is a mistake to report, not to
// ignore.
package configs
