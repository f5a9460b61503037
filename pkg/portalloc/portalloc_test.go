package portalloc

import (
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
)

// mapped pairs public ports with distinct local ports that none of them
// keeps.
func mapped(ports ...uint16) []Sample {
	var s []Sample
	for i, m := range ports {
		s = append(s, Sample{Local: 40000 + uint16(i)*1000, Mapped: m})
	}
	return s
}

// stride returns n ports from first, stride apart, wrapping as Ports does.
func stride(first uint16, d, n int) []Sample { return mapped(Ports(first, d, n)...) }

func TestClassify(t *testing.T) {
	l := []uint16{40000, 41000, 42000, 43000, 44000, 45000}
	kept := func(ports ...uint16) []Sample {
		var s []Sample
		for i, m := range ports {
			s = append(s, Sample{Local: l[i], Mapped: m})
		}
		return s
	}
	tests := []struct {
		name    string
		samples []Sample
		want    Allocation
		stride  int
		next    uint16
	}{
		{"preserved", kept(l...), Preserved, 0, 0},
		{"preserved but one", kept(40000, 41000, 42000, 43000, 44000, 7), Preserved, 0, 0},
		{"preserved, three samples", kept(40000, 41000, 42000), Preserved, 0, 0},
		{"+1", mapped(20000, 20001, 20002, 20003, 20004, 20005), Sequential, 1, 20006},
		{"+1, three samples (punch)", mapped(20000, 20001, 20002), Sequential, 1, 20003},
		{"+2", mapped(30000, 30002, 30004, 30006), Sequential, 2, 30008},
		{"+256 (the independent lab's NAT)", mapped(20000, 20256, 20512, 20768, 21024, 21280), Sequential, 256, 21536},
		{"+256, four samples (punch)", mapped(1279, 1535, 1791, 2047), Sequential, 256, 2303},
		{"+256, three samples (punch)", mapped(1279, 1535, 1791), Sequential, 256, 2047},
		{"+1000", mapped(10000, 11000, 12000, 13000), Sequential, 1000, 14000},
		{"-2", mapped(30010, 30008, 30006, 30004, 30002, 30000), Sequential, -2, 29998},
		{"-2, three samples", mapped(30010, 30008, 30006), Sequential, -2, 30004},
		{"-256", mapped(40000, 39744, 39488, 39232), Sequential, -256, 38976},
		{"+1, one port taken by other traffic", mapped(20000, 20001, 20003, 20004, 20005, 20006), Sequential, 1, 20007},
		{"+256, one port taken between (punch)", mapped(20000, 20256, 20768, 21024), Sequential, 256, 21280},
		{"+256, three ports taken between", mapped(20000, 20256, 21280, 21536), Sequential, 256, 21792},
		{"+256, a gap in three samples", mapped(20000, 20256, 20768), Sequential, 256, 21024},
		{"-2, two ports taken between", mapped(30010, 30008, 30002, 30000), Sequential, -2, 29998},
		{"+1, gaps all along", mapped(20000, 20002, 20003, 20005, 20006, 20009), Sequential, 1, 20010},
		{"+2 wrapping through 0", mapped(65532, 65534, 0, 2, 4, 6), Sequential, 2, 8},
		{"+256 wrapping from 65535 to 1024", stride(64768, 256, 6), Sequential, 256, 1792},
		{"+256 wrapping, three samples", mapped(65280, 1024, 1280), Sequential, 256, 1536},
		{"-256 wrapping from 1024 to 65535", stride(1536, -256, 5), Sequential, -256, 64768},
		{"+1 wrapping", mapped(65534, 65535, 1024, 1025), Sequential, 1, 1026},
		{"+1 with an old mapping inside", mapped(20000, 20001, 19950, 20002, 20003, 20004), Sequential, 1, 20005},
		{"+1 with two old mappings inside (lab, 5% loss)", mapped(20019, 20020, 20021, 20251, 20010, 20022), Sequential, 1, 20023},
		{"two outliers and a disagreeing step", mapped(20019, 20020, 20021, 20251, 20010, 20024), Random, 0, 0},
		{"random", mapped(31234, 5021, 60123, 17800, 44321, 2222), Random, 0, 0},
		{"random, three samples", mapped(31234, 5021, 60123), Random, 0, 0},
		{"random, four samples", mapped(48213, 2710, 33391, 61004), Random, 0, 0},
		{"+5", mapped(20000, 20005, 20010, 20015), Sequential, 5, 20020},
		{"a step beyond the gap is not the stride", mapped(20000, 20001, 20006), Random, 0, 0},
		{"opposite signs are not one stride", mapped(20000, 20256, 20000), Random, 0, 0},
		{"too few", mapped(20000, 20001), Unknown, 0, 0},
		{"none", nil, Unknown, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Classify(tt.samples)
			if a.Allocation != tt.want || a.Stride != tt.stride || a.Next() != tt.next {
				t.Errorf("Classify(%v) = %s stride %d next %d, want %s stride %d next %d", tt.samples,
					a.Allocation, a.Stride, a.Next(), tt.want, tt.stride, tt.next)
			}
			if (a.Allocation == Unknown) != (a.Reason != "") {
				t.Errorf("reason %q with allocation %s", a.Reason, a.Allocation)
			}
		})
	}
}

// TestClassifyRandomNAT: a NAT that picks every port at random is almost
// never taken for a sequential one, whatever the number of samples.
func TestClassifyRandomNAT(t *testing.T) {
	var state uint64 = 0x9e3779b97f4a7c15
	rnd := func() uint16 { // xorshift: deterministic
		state ^= state << 13
		state ^= state >> 7
		state ^= state << 17
		return uint16(1024 + state%64512)
	}
	for _, n := range []int{3, 4, 5, 6} {
		wrong := 0
		const trials = 20000
		for range trials {
			s := make([]uint16, n)
			for i := range s {
				s[i] = rnd()
			}
			if Classify(mapped(s...)).Allocation != Random {
				wrong++
			}
		}
		// Three samples have two steps: the second is one to four times
		// the first in about 8 of 64512 draws.
		if wrong > trials/1000 {
			t.Errorf("%d samples: %d of %d random NATs not classified random", n, wrong, trials)
		}
	}
}

func TestPorts(t *testing.T) {
	tests := []struct {
		first  uint16
		stride int
		n      int
		want   []uint16
	}{
		{20000, 1, 3, []uint16{20000, 20001, 20002}},
		{20000, 256, 3, []uint16{20000, 20256, 20512}},
		{30000, -2, 3, []uint16{30000, 29998, 29996}},
		{65280, 256, 3, []uint16{65280, 1024, 1280}},
		{65535, 1, 2, []uint16{65535, 1024}},
		{1100, -256, 2, []uint16{1100, 65356}},
		{65534, 2, 3, []uint16{65534, 1024, 1026}},
		{500, -1000, 2, []uint16{500, 65036}},
		{20000, 1, 0, []uint16{}},
	}
	for _, tt := range tests {
		if got := Ports(tt.first, tt.stride, tt.n); !slices.Equal(got, tt.want) {
			t.Errorf("Ports(%d, %d, %d) = %v, want %v", tt.first, tt.stride, tt.n, got, tt.want)
		}
	}
}

// FuzzClassify: any samples classify without panicking; a sequential
// answer has a stride that one step at least is exactly (forgiven samples
// aside), and predicts
// the port that stride away from the last sample.
func FuzzClassify(f *testing.F) {
	f.Add([]byte{0x4e, 0x20, 0x4e, 0x21, 0x4e, 0x22})
	f.Add([]byte{0xff, 0x00, 0x04, 0x00, 0x05, 0x00, 0x06, 0x00})
	f.Add([]byte{0x75, 0x3a, 0x75, 0x38, 0x75, 0x36, 0x75, 0x34})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s []Sample
		for i := 0; i+4 <= len(b) && len(s) < 16; i += 4 {
			s = append(s, Sample{Local: binary.BigEndian.Uint16(b[i:]), Mapped: binary.BigEndian.Uint16(b[i+2:])})
		}
		a := Classify(s)
		switch a.Allocation {
		case Sequential:
			if a.Stride == 0 {
				t.Fatalf("sequential with stride 0: %v", s)
			}
			seen := false // between two samples, perhaps with forgiven ones between
			for i := range s {
				for j := i + 1; j < len(s); j++ {
					seen = seen || exact(s[i].Mapped, s[j].Mapped, a.Stride)
				}
			}
			if !seen {
				t.Fatalf("stride %d is no step of %v", a.Stride, s)
			}
			if want := Ports(a.Last, a.Stride, 2)[1]; a.Next() != want {
				t.Fatalf("next %d, want %d", a.Next(), want)
			}
		case Preserved, Random:
			if a.Stride != 0 {
				t.Fatalf("%s with stride %d", a.Allocation, a.Stride)
			}
		case Unknown:
			if len(s) >= MinSamples {
				t.Fatalf("unknown with %d samples", len(s))
			}
		default:
			t.Fatalf("allocation %q", a.Allocation)
		}
		_ = fmt.Sprint(a)
	})
}
