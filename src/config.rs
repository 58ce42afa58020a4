//! Config loading and validation. (Implementation in progress: skeleton.)
