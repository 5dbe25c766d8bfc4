package apicall

import (
	"context"
	"net"
	"net/http/httptrace"
	"sync/atomic"
)

// sendGate is one request's last check, run by the connection that carries
// the request right before its first byte is written. A caller's own check
// (budget.Request) runs before the HTTP client takes a connection, dials and
// hands the request to its writer; a process paused in between (SIGSTOP, a
// frozen VM) would otherwise resume straight into the write, on a lease a peer
// may have taken over (docs/protocol.md, "No send on a lost lease").
type sendGate struct {
	check   func() error
	refused atomic.Pointer[error]
}

// guardedConn is a connection of DefaultHTTPClient: the gate the current
// request armed is run, once, by the first Write after it was armed.
type guardedConn struct {
	net.Conn
	gate atomic.Pointer[sendGate]
}

// Write runs the armed gate's check before anything is written; a refusal
// writes nothing, so the transport reports the request as never written.
func (c *guardedConn) Write(p []byte) (int, error) {
	if g := c.gate.Swap(nil); g != nil && g.check != nil {
		if err := g.check(); err != nil {
			g.refused.Store(&err)
			return 0, err
		}
		// The transport may have retried the request on another
		// connection after a refusal: only the last check says whether
		// the request was held back.
		g.refused.Store(nil)
	}
	return c.Conn.Write(p)
}

// withSendGate arms g on whichever connection the transport gives the
// request (a TLS connection's underlying one included). Every request arms
// its connection, with or without a check, so a gate never outlives the
// request it belongs to.
func withSendGate(ctx context.Context, g *sendGate) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		conn := info.Conn
		if under, ok := conn.(interface{ NetConn() net.Conn }); ok {
			conn = under.NetConn()
		}
		if gc, ok := conn.(*guardedConn); ok {
			gc.gate.Store(g)
		}
	}})
}

// refusal is the check's error when the gate refused the request.
func (g *sendGate) refusal() error {
	if err := g.refused.Load(); err != nil {
		return *err
	}
	return nil
}
