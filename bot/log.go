package bot

import (
	"context"
	"log/slog"

	"github.com/go-logr/logr"
	protologger "github.com/livekit/protocol/logger"
	lksdk "github.com/livekit/server-sdk-go/v2"
)

// UseSDKLogger sends the LiveKit SDK's process-wide logs (its WebRTC stack
// logs through one package-level logger, not the per-room one) to log. Call
// it once at start-up, before any bot joins.
func UseSDKLogger(log *slog.Logger) {
	lksdk.SetLogger(sdkLogger(log))
}

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
