// Package docs holds synscope's reference pages (one per mode, plus
// kernels, performance, security and layout), linked from the README's
// front page. It has no code: its test checks that every relative link in
// README.md and docs/*.md reaches an existing file and heading.
package docs
