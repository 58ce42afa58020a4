//! Renderers: each writes to `impl io::Write`. (Implementation in progress: skeleton.)
