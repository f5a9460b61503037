package lab

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/natkit/natkit/pkg/natlab"
)

// DownLab is one lab that --down removed.
type DownLab struct {
	ID string `json:"id"`
	// Namespaces is how many of its namespaces were still there.
	Namespaces int `json:"namespaces"`
}

type downResult struct {
	labs       []DownLab
	removed    int
	unrecorded []string
}

func (o *Options) user() int {
	if o.User == nil {
		return invokingUser()
	}
	return o.User()
}

func (o *Options) registry() *natlab.Registry {
	if o.Registry == nil {
		return &natlab.Registry{Dir: natlab.DefaultRegistryDir}
	}
	return o.Registry
}

// down removes the lab --down names: DownID, every recorded lab (--all), or
// the last lab the user made. It only ever removes the namespaces of a lab
// it was given or found recorded: never every natkit-* namespace.
func down(ctx context.Context, opts *Options) error {
	reg := opts.registry()
	var ids []string
	switch {
	case opts.DownID != "":
		ids = []string{opts.DownID}
	case opts.All:
		recs, err := reg.List()
		if err != nil {
			return err
		}
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
	default:
		r, ok, err := reg.Last(opts.user())
		if err != nil {
			return err
		}
		if ok {
			ids = []string{r.ID}
		}
	}
	var res downResult
	var errs []error
	for _, id := range ids {
		n, err := natlab.Down(ctx, id)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := reg.Remove(id); err != nil {
			errs = append(errs, err)
		}
		res.labs = append(res.labs, DownLab{ID: id, Namespaces: n})
		res.removed += n
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	res.unrecorded, _ = unrecorded(reg)
	return renderDown(opts, res)
}

// unrecorded lists the ids of natkit labs with namespaces on this machine
// but no record in reg.
func unrecorded(reg *natlab.Registry) ([]string, error) {
	nss, err := natlab.Namespaces("")
	if err != nil {
		return nil, err
	}
	recs, err := reg.List()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, ns := range nss {
		id, _, ok := strings.Cut(strings.TrimPrefix(ns, natlab.Prefix), "-")
		if !ok || !natlab.ValidID(id) || slices.Contains(ids, id) ||
			slices.ContainsFunc(recs, func(r natlab.Record) bool { return r.ID == id }) {
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}
