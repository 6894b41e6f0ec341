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
// secrets (LIVEKIT_API_SECRET, PIPELINE_WEBHOOK_SECRET) never appear in an
// error.
//
// [Config.Validate] only checks: values derived from settings (the LiveKit
// HTTP URL, the listen address, whether S3 is on, which pair signs the
// pipeline webhook) are methods, computed where they are used.
package configs
