package api

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/livekit/protocol/auth"
)

// requireRecordGrant admits a request carrying `Authorization: Bearer
// <LiveKit access token>` signed with one of our API keys and holding the
// roomRecord video grant, as LiveKit's own Egress API requires. Missing,
// malformed, expired or wrongly signed tokens are 401; a valid token without
// the grant is 403.
func requireRecordGrant(keys auth.KeyProvider) echo.MiddlewareFunc {
	return recordGrant(keys, func(r *http.Request) string { return r.Header.Get(echo.HeaderAuthorization) })
}

// recordGrant is requireRecordGrant with the token read by token.
func recordGrant(keys auth.KeyProvider, token func(*http.Request) string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := token(c.Request())
			raw, ok := strings.CutPrefix(h, "Bearer ")
			if !ok || strings.TrimSpace(raw) == "" {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="trackrec"`)
				return echo.NewHTTPError(http.StatusUnauthorized, "missing bearer token (a LiveKit access token with the roomRecord grant)")
			}
			v, err := auth.ParseAPIToken(strings.TrimSpace(raw))
			if err != nil {
				return echo.NewHTTPError(http.StatusUnauthorized, "invalid token")
			}
			secret := keys.GetSecret(v.APIKey())
			if secret == "" {
				return echo.NewHTTPError(http.StatusUnauthorized, "token signed with an unknown API key")
			}
			_, grants, err := v.Verify(secret)
			if err != nil {
				return echo.NewHTTPError(http.StatusUnauthorized, "token not verified: "+err.Error())
			}
			if grants == nil || grants.Video == nil || !grants.Video.RoomRecord {
				return echo.NewHTTPError(http.StatusForbidden, "token lacks the roomRecord grant")
			}
			return next(c)
		}
	}
}
