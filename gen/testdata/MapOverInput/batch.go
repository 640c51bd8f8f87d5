package batch

import (
	"context"
	"time"
)

//qflow:flow resize_images timeout=2m
type Images []Image

type Image struct {
	URL   string
	Width int
}

type Thumb struct {
	URL  string
	Size int
}

// resize maps over the flow input itself: it has no dependency.
//
//qflow:step map name=resize retries=2 backoff=250ms delay=1500ms
func resize(ctx context.Context, img Image) (Thumb, error) {
	return Thumb{URL: img.URL + "?w=128", Size: 128}, nil
}

// notify returns only an error: it has no output, so Publish takes no
// parameter for it.
//
//qflow:step depends=resize
func notify(ctx context.Context, thumbs []Thumb) error { return nil }

//qflow:step depends=notify,resize timeout=90s
func Publish(ctx context.Context, imgs Images, thumbs []Thumb) (map[string]time.Time, error) {
	return nil, nil
}

//qflow:step depends=resize map
func Verify(ctx context.Context, t Thumb) (bool, error) { return t.Size > 0, nil }
