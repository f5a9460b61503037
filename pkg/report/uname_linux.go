//go:build linux

package report

import "golang.org/x/sys/unix"

// Uname is the kernel's name and release, as uname -sr prints them.
func Uname() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:]), nil
}
