package egress

import (
	"net"

	"golang.org/x/sys/unix"
)

// unsent is how many bytes written to c the peer has not acknowledged
// (SIOCOUTQ): what a dropped connection may have lost.
func unsent(c net.Conn) (int, bool) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil || ierr != nil {
		return 0, false
	}
	return n, true
}
