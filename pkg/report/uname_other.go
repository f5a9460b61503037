//go:build !linux

package report

// Uname is the kernel's name and release; outside Linux natkit does not
// read it (the report says null).
func Uname() (string, error) { return "", nil }
