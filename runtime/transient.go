package runtime

import (
	"context"
	"errors"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// transient reports whether err is a lost or refused connection (the
// server restarting, a backend terminated, a network failure) that a later
// try on a fresh connection may not hit, as opposed to an error the same
// statement would return again.
func transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case len(pgErr.Code) == 5 && pgErr.Code[:2] == "08": // connection exception
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // admin/crash shutdown, cannot connect now
			return true
		case pgErr.Code == "40001", pgErr.Code == "40P01": // serialization failure, deadlock
			return true
		}
		return false
	}
	var netErr net.Error
	var connectErr *pgconn.ConnectError
	return errors.As(err, &netErr) || errors.As(err, &connectErr) || pgconn.SafeToRetry(err) || pgconn.Timeout(err) ||
		isClosedConn(err)
}

// isClosedConn matches pgx's errors for a connection that died under a
// statement (they wrap no net.Error once the socket is gone).
func isClosedConn(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"conn closed", "broken pipe", "connection reset", "eof", "write failed", "failed to receive message"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
