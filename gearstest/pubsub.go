package gearstest

import (
	"io"
	"net"
	"sync"

	"github.com/tidwall/redcon"
)

// bridges tracks the bridged connections so that Close can end them.
type bridges struct {
	mu     sync.Mutex
	conns  map[net.Conn]*storeConn
	closed bool
}

func (b *bridges) add(nc net.Conn, be *storeConn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	if b.conns == nil {
		b.conns = map[net.Conn]*storeConn{}
	}
	b.conns[nc] = be
	return true
}

func (b *bridges) remove(nc net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.conns, nc)
}

func (b *bridges) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for nc, be := range b.conns {
		_ = nc.Close()
		be.close()
	}
}

// startBridge detaches conn from the command loop and bridges it to its store connection.
func (s *Server) startBridge(conn redcon.Conn, c *client, args [][]byte) {
	be, err := s.backend(c)
	if err != nil {
		conn.WriteError(msgStoreUnavailable + err.Error())
		return
	}
	c.be = nil    // the bridge owns it now
	be.arm(false) // messages come at any time; Close ends the bridge
	first := appendCommand(nil, args...)
	dc := conn.Detach()
	nc := dc.NetConn()
	if !s.bridges.add(nc, be) {
		_ = nc.Close()
		be.close()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.bridges.remove(nc)
		s.bridge(dc, nc, be, first)
	}()
}

func (s *Server) bridge(dc redcon.DetachedConn, nc net.Conn, be *storeConn, first []byte) {
	defer func() {
		_ = nc.Close()
		be.close()
	}()
	if err := dc.Flush(); err != nil { // replies to commands pipelined before the SUBSCRIBE
		return
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(nc, be.r)
		_ = nc.Close()
	}()
	defer func() {
		be.close()
		<-copied
	}()
	if _, err := be.c.Write(first); err != nil {
		return
	}
	for {
		cmd, err := dc.ReadCommand()
		if err != nil {
			return
		}
		if _, err := be.c.Write(appendCommand(nil, cmd.Args...)); err != nil {
			return
		}
	}
}
