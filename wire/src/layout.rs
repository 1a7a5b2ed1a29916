//! Declarative layouts: one macro call per body defines the struct, its codec and its byte
//! table, so the code and PROTOCOL.md's tables come from the same source (a test checks every
//! generated table appears in PROTOCOL.md verbatim).

/// One row of a byte table.
#[derive(Clone, Copy, Debug)]
pub struct FieldLayout {
    /// Field name.
    pub name: &'static str,
    /// Wire type, as PROTOCOL.md names it.
    pub wire_type: fn() -> String,
    /// Encoded size (for a list: the count byte).
    pub bytes: usize,
    /// What the field means.
    pub doc: &'static str,
}

/// A markdown table of `layout`: offset, size, type, field, meaning.
pub fn markdown_table(layout: &[FieldLayout]) -> String {
    let mut table = String::from("| offset | size | type | field | meaning |\n|---|---|---|---|---|\n");
    let mut offset = 0;
    for field in layout {
        table.push_str(&format!(
            "| {offset} | {} | {} | `{}` | {} |\n",
            field.bytes,
            (field.wire_type)(),
            field.name,
            field.doc.trim()
        ));
        offset += field.bytes;
    }
    if layout.is_empty() {
        table.push_str("| 0 | 0 | | | empty body |\n");
    }
    table
}

/// Defines a body struct with public fields, its [`Field`](crate::field::Field) codec (fields in
/// order, no padding) and its `LAYOUT` byte table. Field docs become the table's meaning column.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[doc = $doc:literal])* $field:ident : $type:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $type, )*
        }

        impl $crate::field::Field for $name {
            const BYTES: usize = 0 $( + <$type as $crate::field::Field>::BYTES )*;
            const WIRE_TYPE: &'static str = stringify!($name);
            fn wire_type() -> String {
                format!("{} ({})", stringify!($name), Self::BYTES)
            }
            #[inline(always)]
            fn put(&self, _out: &mut bytes::BytesMut) {
                $( $crate::field::Field::put(&self.$field, _out); )*
            }
            #[inline(always)]
            fn get(
                _reader: &mut $crate::field::Reader<'_>,
                _name: &'static str,
            ) -> Result<Self, $crate::error::FieldError> {
                Ok($name {
                    $( $field: <$type as $crate::field::Field>::get(_reader, stringify!($field))?, )*
                })
            }
            fn sample(_entropy: &mut $crate::field::Entropy<'_>) -> Self {
                $name {
                    $( $field: <$type as $crate::field::Field>::sample(_entropy), )*
                }
            }
        }

        impl $name {
            /// This body's byte table, in wire order.
            pub const LAYOUT: &'static [$crate::layout::FieldLayout] = &[
                $( $crate::layout::FieldLayout {
                    name: stringify!($field),
                    wire_type: <$type as $crate::field::Field>::wire_type,
                    bytes: <$type as $crate::field::Field>::BYTES,
                    doc: concat!($($doc),*),
                }, )*
            ];
        }
    };
}
pub(crate) use wire_struct;

/// Defines a one-byte enum: `#[repr(u8)]`, `from_u8`, a value table for the docs, and a
/// [`Field`](crate::field::Field) codec that rejects undefined values.
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[doc = $doc:literal])* $variant:ident = $value:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[doc = $doc])* $variant = $value, )*
        }

        impl $name {
            /// Every value, in wire order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];
            /// (value, name, meaning) rows for PROTOCOL.md.
            pub const VALUES: &'static [(u8, &'static str, &'static str)] =
                &[$( ($value, stringify!($variant), concat!($($doc),*)), )*];

            /// The variant for a wire byte, if defined.
            pub fn from_u8(value: u8) -> Option<$name> {
                match value {
                    $( $value => Some($name::$variant), )*
                    _ => None,
                }
            }
        }

        impl $crate::field::Field for $name {
            const BYTES: usize = 1;
            const WIRE_TYPE: &'static str = concat!(stringify!($name), " (u8)");
            #[inline]
            fn put(&self, out: &mut bytes::BytesMut) {
                bytes::BufMut::put_u8(out, *self as u8);
            }
            #[inline]
            fn get(
                reader: &mut $crate::field::Reader<'_>,
                name: &'static str,
            ) -> Result<Self, $crate::error::FieldError> {
                let value = reader.array::<1>()?[0];
                $name::from_u8(value).ok_or($crate::error::FieldError::invalid(name, value))
            }
            fn sample(entropy: &mut $crate::field::Entropy<'_>) -> Self {
                let index = entropy.below($name::ALL.len() as u64) as usize;
                $name::ALL.get(index).copied().unwrap_or($name::ALL[0])
            }
        }
    };
}
pub(crate) use wire_enum;

/// Defines an id newtype over an integer, encoded as that integer.
macro_rules! wire_id {
    ($(#[$meta:meta])* pub struct $name:ident($type:ty);) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub $type);

        impl $crate::field::Field for $name {
            const BYTES: usize = <$type as $crate::field::Field>::BYTES;
            const WIRE_TYPE: &'static str = concat!(stringify!($name), " (", stringify!($type), ")");
            #[inline]
            fn put(&self, out: &mut bytes::BytesMut) {
                $crate::field::Field::put(&self.0, out);
            }
            #[inline]
            fn get(
                reader: &mut $crate::field::Reader<'_>,
                name: &'static str,
            ) -> Result<Self, $crate::error::FieldError> {
                Ok($name(<$type as $crate::field::Field>::get(reader, name)?))
            }
            fn sample(entropy: &mut $crate::field::Entropy<'_>) -> Self {
                $name(<$type as $crate::field::Field>::sample(entropy))
            }
        }
    };
}
pub(crate) use wire_id;
