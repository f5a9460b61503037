package cmdutil

import (
	"crypto/tls"
	"crypto/x509"
	"net/netip"
	"os"
	"strings"
)

// ClientTLS is the TLS configuration of a client command's --insecure and
// --ca-file flags: nil (the system roots) when neither is given. A CA file
// that cannot be read or holds no PEM certificate is a usage error.
func ClientTLS(insecure bool, caFile string) (*tls.Config, error) {
	switch {
	case insecure:
		return &tls.Config{InsecureSkipVerify: true}, nil //nolint:gosec // asked for with --insecure
	case caFile != "":
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, UsageErrorf("--ca-file: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, UsageErrorf("--ca-file %s: no PEM certificate in it", caFile)
		}
		return &tls.Config{RootCAs: pool}, nil
	}
	return nil, nil
}

// ParseLocal parses a --local value: an IP (any port) or IP:PORT, IPv4 in
// IPv6 unmapped.
func ParseLocal(s string) (netip.AddrPort, error) {
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), 0), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, err
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
