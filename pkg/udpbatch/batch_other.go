//go:build !linux

package udpbatch

import (
	"net"
	"syscall"
)

type sysBatch struct{}

func (s *sysBatch) init(int) {}

// sysConn is never set here: Conn falls back to ReadFrom and WriteTo.
type sysConn struct{}

func newSysConn(net.PacketConn) *sysConn { return nil }

func (s *sysConn) ok() bool { return false }

func (s *sysConn) read(*Pool) (*Batch, int, error) { panic("udpbatch: no batching here") }

func (s *sysConn) write(*sysBatch, []Msg) (int, error) { panic("udpbatch: no batching here") }

func (s *sysConn) readInto(*Batch) (int, error) { panic("udpbatch: no batching here") }

func (s *sysConn) readEach(*Pool, func(*Batch, int) bool) error { panic("udpbatch: no batching here") }

// ReusePort is nil outside Linux, where SO_REUSEPORT does not balance
// datagrams over the sockets: use one socket.
var ReusePort func(network, address string, c syscall.RawConn) error
