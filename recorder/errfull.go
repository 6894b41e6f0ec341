package recorder

import "errors"

// ErrFull is TEMPORARY, so the api compiles until the recorder defines it.
var ErrFull = errors.New("recorder is at capacity")
