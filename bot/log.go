package bot

import (
	"context"
	"log/slog"

	"github.com/go-logr/logr"
	protologger "github.com/livekit/protocol/logger"
)

// sdkLogger routes the SDK's logs into ours. The SDK logs every signal
// exchange at info level, so below debug only its warnings and errors pass.
func sdkLogger(log *slog.Logger) protologger.Logger {
	h := log.With("component", "livekit-sdk").Handler()
	return protologger.LogRLogger(logr.FromSlogHandler(quietHandler{h}))
}

type quietHandler struct{ slog.Handler }

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	if q.Handler.Enabled(ctx, slog.LevelDebug) {
		return true
	}
	return l >= slog.LevelWarn && q.Handler.Enabled(ctx, l)
}

func (q quietHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return quietHandler{q.Handler.WithAttrs(a)}
}
func (q quietHandler) WithGroup(n string) slog.Handler { return quietHandler{q.Handler.WithGroup(n)} }
